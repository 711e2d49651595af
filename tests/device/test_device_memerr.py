"""MemoryError on the board: the real board code (.mpy) under the MicroPython unix port against a real
broker, with allocation failures injected at the points where a fragmented heap fails (verifying a
summary, building a reading, inside the MQTT client while a QoS-1 publish or an incoming summary is in
flight, reading the flash queue). The loop must go on, count every one (stats and status message) and
lose no reading it built."""

from __future__ import annotations

from pathlib import Path

import pytest
from devsupport import Responder, board_config, first_arrivals, stats
from support.broker import Broker
from support.micropython import run_micropython

pytestmark = pytest.mark.micropython

# Each wrapper raises MemoryError on the listed calls (1-based) of what it wraps.
INJECT = """
import sys
import qis_device
from qis import messages
from qis_device import mqtt, store

def failing(name, f, calls, when=None):
    n = [0]
    def wrapper(*args):
        if when is None or when(args):
            n[0] += 1
            if n[0] in calls:
                print("INJECT", name, n[0])
                raise MemoryError
        return f(*args)
    return wrapper

# a summary's verification fails twice (call 3 and its retry 4: dropped), once (call 9: the retry works)
messages.decode = failing("decode", messages.decode, (3, 4, 9))
# a reading fails to build (call 5: that reading is skipped, counted as bad)
messages.encode_fp = failing("encode_fp", messages.encode_fp, (5,))
# mid-packet: the 6th topic read of an incoming PUBLISH (after its fixed header)
read = failing("topic", mqtt.MQTTClient._read, (6,), lambda a: 16 < a[1] < 64)
# no room for the 9th incoming payload: the client skips it through its buffer, the app counts a drop
mqtt.MQTTClient._read = failing("payload", read, (9,), lambda a: a[1] >= 64)
# after the 8th fp went out, before the client returns (the broker may or may not have it)
real_publish = mqtt.MQTTClient.publish
n_fp = [0]
def publish(self, topic, msg, retain=False, qos=0):
    pid = real_publish(self, topic, msg, retain, qos)
    if topic.endswith(b"/fp") or topic.endswith("/fp"):
        n_fp[0] += 1
        if n_fp[0] == 8:
            print("INJECT publish 8")
            raise MemoryError
    return pid
mqtt.MQTTClient.publish = publish
# the first two reads of the flash queue (each reconnect drains it)
store.FrameQueue.peek = failing("peek", store.FrameQueue.peek, (1, 2))
sys.exit(qis_device.main(%r, 12))
"""


def test_memory_errors_are_handled_counted_and_reported_and_no_reading_is_lost(
        tmp_path: Path, mosquitto: Broker, mpy_dir: Path) -> None:
    responder = Responder(mosquitto.host, mosquitto.port, clean_session=False)
    try:
        cfg = board_config(tmp_path / "board", mosquitto.port, summary_timeout_s=0.5, mqtt_timeout_s=1)
        out = run_micropython(INJECT % str(cfg), heap="96K", extra_path=[mpy_dir], cwd=cfg.parent,
                              timeout_s=60)
        injected = [line for line in out.splitlines() if line.startswith("INJECT")]
        assert len(injected) == 9, out  # every injected failure happened
        st = stats(out)
        # 12 iterations, one reading skipped (its frame could not be built twice): 11 readings
        assert st["readings"] == 11 and st["bad_readings"] == 1, out
        # each counted once: decode 2 + 1, encode_fp 1, topic 1, payload 1, publish 1, peek 2
        assert st["mem_errors"] == 9 and st["mem_drops"] == 2, out
        assert st["connects"] == 3  # the mid-packet read and the publish each cost a reconnect, the skip not
        assert st["dropped"] == 0 and st["queued"] == 0 and st["queued_sends"] >= 1
        # the summary dropped for lack of RAM (re=2) is missing; the one cut mid-packet (re=6) came again
        # after the reconnect. (The last readings went through the queue and do not wait for answers.)
        assert "summary re=2 " not in out and "summary re=6 " in out and "summary re=7 " in out, out
        assert st["summaries"] >= 7 and st["timeouts"] == 1, out
        assert out.count("MemoryError in ") + out.count("link down: MemoryError()") == 9, out  # each one logged
        # no reading lost, in order (the frame in flight at the failed publish went again: a duplicate)
        assert responder.wait_for(lambda: len(set(responder.seqs())) == 11, 10), responder.seqs()
        fps = first_arrivals(responder.seqs())
        assert fps == sorted(fps) and len(responder.seqs()) > len(fps)
        # reported in the status messages: the reconnects' `online` and the final `offline`
        # (the board's own final `offline` carries the final counts; a last will from a connection the
        # MemoryError dropped carries the counts of its connect and may reach the broker's subscribers later)
        assert responder.wait_for(lambda: any(f["state"] == "offline" and f["mem_errors"] == 9 and f["mem_drops"] == 2
                                              for f in responder.of_kind("status"))), responder.of_kind("status")
        status = responder.of_kind("status")
        assert all(f["mem_errors"] <= 9 and f["mem_drops"] <= 2 for f in status)
        assert any(f["state"] == "online" and f["mem_errors"] > 0 for f in status)
        assert "Traceback" not in out
    finally:
        responder.close()
