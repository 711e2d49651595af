"""The harness's Mosquitto really persists: a QoS 1 message queued for an offline persistent session
survives a SIGKILL of the broker (after its 1 s autosave) and is delivered after the restart."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from support.broker import Broker


def _client(client_id: str, clean: bool) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)


def test_queued_messages_survive_broker_sigkill(mosquitto: Broker) -> None:
    sub = _client("sub", clean=False)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    sub.subscribe("t", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = _client("pub", clean=True)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    for i in range(5):
        pub.publish("t", b"%d" % i, qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(2.2)  # autosave_interval 1 s
    assert (mosquitto.workdir / "mosquitto.db").exists()
    mosquitto.kill()
    mosquitto.start()
    got: list[bytes] = []
    sub = _client("sub", clean=False)
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert got == [b"0", b"1", b"2", b"3", b"4"]
