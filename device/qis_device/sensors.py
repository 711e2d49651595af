"""Sensor drivers: each is a callable returning a dict of raw readings (input name -> number or label).

How it works: make_sensor(spec, schema, fixed) builds the driver named by spec["driver"]:
- "sim": SimSensor, deterministic (own seeded generator, not the global `random`), derived from the
  schema: every bands field gets a value inside one of its bands, every label field one of its labels,
  every other continuous input a value near its centre. mode "cycle" (default) walks all band
  combinations in turn (machine_health: 4 x 4 x 4 = 64 situations, each within 64 readings), mode
  "random" picks bands at random. "float32": true rounds every value through struct "<f", emulating a
  board's 32-bit floats on the host.
- "adc", "bme280": real drivers in qis_device.hw, imported only when configured (they need `machine`,
  which the unix port lacks).
- "multi": {"driver": "multi", "sensors": [spec, ...]} merges several drivers' readings.
- "replay": recorded readings from a file, one JSON object a line (qis_device.replay), each with the
  outcome that followed it, which the board reports once the reading's summary is in.
Labels from the config's "fixed" are merged into every reading by the caller (app.py), so the sim does
not invent them.
"""


class MultiSensor:
    def __init__(self, sensors):
        self.sensors = sensors

    def __call__(self):
        reading = {}
        for sensor in self.sensors:
            part = sensor()
            for key in part:
                reading[key] = part[key]
        return reading


def make_sensor(spec, schema, fixed=None):
    """Build the configured driver; ConfigError with the reason for anything unknown or missing."""
    driver = spec.get("driver")
    if driver == "sim":
        from qis_device.sim import SimSensor

        return SimSensor(schema, spec.get("seed", 1), spec.get("mode", "cycle"), fixed, spec.get("float32", False))
    if driver == "multi":
        parts = spec.get("sensors")
        if not isinstance(parts, list) or not parts:
            raise ValueError("config sensor: multi needs \"sensors\": [driver specs]")
        return MultiSensor([make_sensor(p, schema, fixed) for p in parts])
    if driver == "replay":
        from qis_device.replay import ReplaySensor

        if not isinstance(spec.get("file"), str):
            raise ValueError("config sensor: replay needs \"file\": the recorded readings (JSON lines)")
        return ReplaySensor(spec["file"], spec.get("outcome", "outcome"))
    if driver in ("adc", "bme280"):
        from qis_device import hw  # needs `machine`: never imported on the unix port unless configured

        return hw.make(spec)
    raise ValueError("config sensor: unknown driver %r; use \"sim\", \"adc\", \"bme280\", \"multi\" or "
                     "\"replay\"" % (driver,))
