"""qis_device: the qis-edge board runtime (MicroPython; see docs/device.md).

    import qis_device
    qis_device.main("device.json")          # what the board's main.py does
    qis_device.report_outcome("bearing_wear", 1.0)   # from an on_summary callback or later

Modules: start (config + schema + sensor, unloaded after start-up), config (device.json checks), app
(Device: the loop), link (reconnect policy), mqtt (the MQTT 3.1.1 client), store (flash queue and seq),
sim / sensors / hw (sensor drivers), simoutcome (emulation aid: simulated outcomes), board / periph /
wifi (what differs on real boards).

Errors: ConfigError(ValueError) for a bad device.json (printed, never a crash loop); every network
failure is an OSError (qis_device.mqtt.MQTTError is one), caught by the link and turned into a
reconnect with backoff; a bad reading or frame from outside (qis.errors.QisError) is counted and dropped.
"""

_current = None


def main(config_path="device.json", readings=None, schema_path=None, on_summary=None, drain_ms=2000):
    """Run the board: `readings` readings (None: forever). Returns 0, or 2 for a bad config on the
    unix port; on a board a bad config is printed every 30 s until fixed (no crash or reset loop).

    on_summary(summary: dict, device) is called for every new verified summary.
    """
    global _current
    import gc

    from qis_device import board

    buf = bytearray(512)  # the MQTT packet buffer, allocated while the heap is still in one piece
    # Heap peak: config checks, then the schema parser (both unloaded after use), and only then the
    # running code (app, link, mqtt, messages): the two sets never share the heap.
    from qis_device.start import prepare

    ready = prepare(config_path, schema_path)
    board.unload("qis_device.start")
    if ready is None:
        return 2
    if ready[0].get("sim_outcome"):  # emulated boards (demo, hil): an outcome after every reading
        from qis_device.simoutcome import SimOutcomeDevice as Device
    else:
        from qis_device.app import Device

    ready[0]["buf"] = buf
    buf = None
    gc.collect()
    dev = _current = Device(ready[0], ready[1], ready[2], on_summary, ready[3])
    for key in ("queue_max", "seq_block", "watchdog_ms", "led_pin", "client_id", "site", "buf"):
        ready[0].pop(key, None)  # used while building the Device only
    ready = None
    gc.collect()
    board.log("start %s seq=%d queued=%d heap=%d" % (dev.dev, dev.seq.next_seq, len(dev.queue), gc.mem_free()))
    try:
        dev.run(readings)
        dev.finish(drain_ms)
    except KeyboardInterrupt:
        dev.link.close()
    gc.collect()
    st = dev.stats  # one "name=value ..." line: tests and the emulator parse it
    st["dropped"] = dev.queue.dropped
    st["queued"] = len(dev.queue)
    st["connects"] = dev.link.connects
    st["pings"] = dev.link.client.pings
    st["last_seq"] = dev.seq.last()
    st["heap"] = gc.mem_free()
    print("QIS-STATS", " ".join(["%s=%d" % (k, st[k]) for k in st]))
    _current = None
    return 0


def report_outcome(label, value=None, weight=None, reading_seq=None):
    """Send an outcome frame for the last reading (or `reading_seq`) of the running board; returns its seq."""
    if _current is None:
        raise ValueError("report_outcome: the device is not running")
    return _current.report_outcome(label, value, weight, reading_seq)
