"""The board's own MQTT client (qis_device.mqtt) under the MicroPython unix port: one test per defect
measured in the published clients (docs/design.md and docs/device.md, issue 3).

The client runs with a socket subclass that counts calls and, like ESP32/lwIP sockets, turns the
timeout OFF when setblocking(True) is called (the unix port keeps it, so host tests would pass while
boards hang: umqtt.simple's wait_msg defect)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker import Broker
from support.micropython import run_micropython

pytestmark = pytest.mark.micropython

PRELUDE = """
import socket, time
from qis_device.mqtt import MQTTClient

class Spy(socket.socket):
    writes = 0
    untimed_reads = 0
    setblocking_calls = 0
    nodelay = 0
    def settimeout(self, t):
        self.t = t
        super().settimeout(t)
    def setblocking(self, flag):  # lwIP/ESP32 semantics: blocking mode = no timeout at all
        Spy.setblocking_calls += 1
        self.t = None if flag else 0
        super().settimeout(None if flag else 0)
    def setsockopt(self, level, opt, value):
        if (level, opt) == (6, 1):
            Spy.nodelay += 1
        super().setsockopt(level, opt, value)
    def write(self, data):
        Spy.writes += 1
        return super().write(data)
    def read(self, n):
        if getattr(self, "t", None) is None:
            Spy.untimed_reads += 1
        return super().read(n)

MQTTClient.sock_class = Spy
"""


def run(script: str, mpy_dir: Path, timeout_s: float = 60) -> str:
    return run_micropython(PRELUDE + script, heap="128K", extra_path=[mpy_dir], timeout_s=timeout_s)


def test_one_write_per_packet_nodelay_and_fast_qos1(broker: Broker, mpy_dir: Path) -> None:
    """umqtt.simple writes a PUBLISH in 5 pieces and Nagle makes each QoS-1 publish take ~44 ms
    (23 msg/s); ours writes each packet once with TCP_NODELAY set. mqtt_as awaits QoS 1 at ~10 msg/s."""
    out = run("""
c = MQTTClient("speed", "127.0.0.1", %d, keepalive=30, timeout_s=5)
c.connect()
w0 = Spy.writes
t0 = time.ticks_ms()
for i in range(500):
    c.publish("qis/test/speed", b"x" * 200, qos=1)
ms = time.ticks_diff(time.ticks_ms(), t0)
print("WRITES", Spy.writes - w0, "MS", ms, "NODELAY", Spy.nodelay)
c.disconnect()
""" % broker.port, mpy_dir)
    words = out.split()
    writes, ms, nodelay = int(words[words.index("WRITES") + 1]), int(words[words.index("MS") + 1]), \
        int(words[words.index("NODELAY") + 1])
    assert writes == 500  # one write per PUBLISH; the PUBACKs are read, not written
    assert nodelay == 1
    rate = 500 / max(ms, 1) * 1000
    assert rate > 300, "QoS-1 publish rate %.0f msg/s (umqtt+Nagle: 23, mqtt_as: 10)" % rate


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts, answers CONNECT with CONNACK, then says nothing: a broker that stalls (or lost WiFi)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(1024)
            conn.sendall(b"\x20\x02\x00\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ls.getsockname()[1]
    finally:
        ls.close()
        for c in conns:
            c.close()


def test_a_stalled_broker_times_out_instead_of_hanging(silent_server: int, mpy_dir: Path) -> None:
    """umqtt.robust waits forever for a PUBACK; umqtt.simple's wait_msg turns the timeout off on
    boards. Ours never calls setblocking, re-applies the timeout before every read and raises OSError."""
    start = time.monotonic()
    out = run("""
c = MQTTClient("stall", "127.0.0.1", %d, keepalive=30, timeout_s=1)
c.connect()
t0 = time.ticks_ms()
try:
    c.publish("qis/test/stall", b"x", qos=1)
    print("NO ERROR")
except OSError as e:
    print("PUBLISH OSError after", time.ticks_diff(time.ticks_ms(), t0), "ms")
t0 = time.ticks_ms()
try:
    c.wait_msg(300)  # poll on a socket subclass reports "readable" here: the read's timeout saves us
except OSError:
    pass
print("WAITMS", time.ticks_diff(time.ticks_ms(), t0))
print("UNTIMED", Spy.untimed_reads, "SETBLOCKING", Spy.setblocking_calls)
MQTTClient.sock_class = None  # a plain socket: poll answers, wait_msg returns None after 300 ms
p = MQTTClient("stall-2", "127.0.0.1", %d, keepalive=30, timeout_s=1)
p.connect()
t0 = time.ticks_ms()
print("PLAIN", p.wait_msg(300), time.ticks_diff(time.ticks_ms(), t0) < 1000)
""" % (silent_server, silent_server), mpy_dir, timeout_s=30)
    assert "PUBLISH OSError after" in out
    assert int(out.split("WAITMS ")[1].split()[0]) < 2500
    assert "UNTIMED 0 SETBLOCKING 0" in out
    assert "PLAIN None True" in out
    assert time.monotonic() - start < 15


def test_reconnect_with_session_present_is_accepted(mosquitto: Broker, mpy_dir: Path) -> None:
    """mqtt_as rejects CONNACK flags != 0, so with clean=False it can never reconnect (MQTT-3.2.2-2)."""
    out = run("""
MQTTClient.sock_class = None
c = MQTTClient("persist-1", "127.0.0.1", %d, keepalive=30, timeout_s=2)
got = []
c.set_callback(lambda t, m: got.append(m))
print("FIRST", c.connect(False))
c.subscribe("qis/test/persist", 1)
c.close()  # dropped without DISCONNECT, as after a WiFi loss
print("SECOND", c.connect(False))
c.publish("qis/test/persist", b"hello", qos=1)
for i in range(20):
    c.wait_msg(100)
    if got:
        break
print("GOT", got)
""" % mosquitto.port, mpy_dir)
    assert "SECOND True" in out  # session present, and the connection works
    assert "GOT [b'hello']" in out


def test_our_client_is_not_shadowed_by_a_frozen_umqtt(tmp_path: Path, broker: Broker, mpy_dir: Path) -> None:
    """ESP32 firmware freezes umqtt, which shadows any newer copy; our client lives in qis_device.mqtt
    and never imports umqtt (a poisoned umqtt first on the path must not matter)."""
    poison = tmp_path / "poison" / "umqtt"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('frozen umqtt shadowing us')\n")
    (poison / "simple.py").write_text("raise ImportError('frozen umqtt shadowing us')\n")
    out = run_micropython(PRELUDE + """
c = MQTTClient("shadow", "127.0.0.1", %d)
c.connect()
c.publish("qis/test/shadow", b"ok", qos=1)
c.disconnect()
import sys
print("OK", "umqtt" in sys.modules)
""" % broker.port, heap="128K", extra_path=[tmp_path / "poison", mpy_dir])
    assert "OK False" in out
