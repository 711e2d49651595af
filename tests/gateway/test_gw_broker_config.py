"""broker-config against a real Mosquitto: logins (both hash writers), ACL isolation, and the measured
slow-subscriber behaviour of the generated config versus stock queue limits."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from qis_gateway.broker_config import generate, hash_password
from qis_gateway.registry import Registry, board_password
from support.broker import free_port, mosquitto_path, wait_listening

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")


class Mosq:
    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port = conf, port
        self.proc = subprocess.Popen([mosquitto_path() or "mosquitto", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening("127.0.0.1", port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Mosq, dict[str, str], Path]]:
    with Registry(tmp_path / "r.sqlite") as reg:
        a = reg.add("pump-01", "site-a")
        b = reg.add("pump-02", "site-a")
        reg.add("gone-03", "site-a")
        reg.revoke("gone-03")
        records = reg.list()
    port = free_port()
    files = generate(tmp_path / "broker", records, listen=("127.0.0.1", port), gateway_password="gw-pass",
                     run_as="root" if os.geteuid() == 0 else None)
    broker = Mosq(files.conf, port)
    users = {"qis-gateway": "gw-pass", "pump-01": board_password(a.secret), "pump-02": board_password(b.secret)}
    try:
        yield broker, users, files.conf
    finally:
        broker.stop()


def connect(port: int, user: str, password: str, client_id: str = "", clean: bool = True,
            received: list | None = None) -> tuple[paho.Client, int]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or user + "-t", clean_session=clean)
    c.username_pw_set(user, password)
    result: list[int] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason, props):  # noqa: ANN001
        result.append(reason.value)
        done.set()

    c.on_connect = on_connect
    if received is not None:
        c.on_message = lambda client, userdata, msg: received.append((msg.topic, msg.payload))
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    done.wait(5)
    return c, (result[0] if result else -1)


def close(c: paho.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_logins_and_acl_isolation(setup) -> None:
    broker, users, conf = setup
    text = conf.read_text()
    assert "max_queued_messages 0" in text and "allow_anonymous false" in text and "persistence true" in text
    _, rc = connect(broker.port, "pump-01", "wrong")
    assert rc != 0
    _, rc = connect(broker.port, "gone-03", "anything")
    assert rc != 0
    gw_got: list = []
    gw, rc = connect(broker.port, "qis-gateway", users["qis-gateway"], received=gw_got)
    assert rc == 0
    gw.subscribe("qis/v1/+/+/fp", 1)
    spy_got: list = []
    spy, rc = connect(broker.port, "pump-02", users["pump-02"], received=spy_got)
    assert rc == 0
    spy.subscribe("qis/v1/site-a/pump-01/summary", 1)  # someone else's answers: filtered out
    spy.subscribe("qis/v1/site-a/pump-02/summary", 1)
    time.sleep(0.3)
    board, rc = connect(broker.port, "pump-01", users["pump-01"])
    assert rc == 0
    board.publish("qis/v1/site-a/pump-01/fp", b"own", qos=1).wait_for_publish(5)
    forged, rc = connect(broker.port, "pump-01", users["pump-01"], client_id="pump-01-forger")
    forged.publish("qis/v1/site-a/pump-02/fp", b"forged", qos=1)  # not its topic: dropped by the ACL
    gw.publish("qis/v1/site-a/pump-01/summary", b"for-01", qos=1).wait_for_publish(5)
    gw.publish("qis/v1/site-a/pump-02/summary", b"for-02", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert [p for _, p in gw_got] == [b"own"]
    assert [p for _, p in spy_got] == [b"for-02"]
    for c in (gw, spy, board, forged):
        close(c)


def test_python_hashes_are_accepted_by_mosquitto(tmp_path: Path) -> None:
    port = free_port()
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:%s\n" % hash_password("s3cret"))
    conf = tmp_path / "m.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n%s" % (
        port, passwd, "user root\n" if os.geteuid() == 0 else ""))
    broker = Mosq(conf, port)
    try:
        c, rc = connect(port, "alice", "s3cret")
        assert rc == 0
        close(c)
        _, rc = connect(port, "alice", "S3cret")
        assert rc != 0
    finally:
        broker.stop()


def _slow_subscriber_loss(conf: Path, port: int, users: dict[str, str], count: int) -> int:
    """Subscriber with a persistent session goes away (the slowest subscriber there is); the publisher
    sends `count` QoS 1 messages; the subscriber comes back. Returns how many never arrived."""
    got: list = []
    sub, _ = connect(port, "qis-gateway", users["qis-gateway"], client_id="slow-sub", clean=False, received=got)
    sub.subscribe("qis/v1/+/+/fp", 1)
    time.sleep(0.2)
    close(sub)
    pub, _ = connect(port, "pump-01", users["pump-01"])
    infos = [pub.publish("qis/v1/site-a/pump-01/fp", b"m%05d" % i, qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(10)
    close(pub)
    sub, _ = connect(port, "qis-gateway", users["qis-gateway"], client_id="slow-sub", clean=False, received=got)
    deadline = time.monotonic() + 10
    last = -1
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if len(got) == last:
            break
        last = len(got)
    close(sub)
    return count - len({p for _, p in got})


def test_slow_subscriber_loses_nothing_with_the_generated_config(setup) -> None:
    broker, users, conf = setup
    count = 3000
    lost = _slow_subscriber_loss(conf, broker.port, users, count)
    # Baseline in the same run: the same broker with stock queue limits loses messages.
    broker.stop()
    stock = conf.parent / "stock.conf"
    stock.write_text(conf.read_text().replace("max_queued_messages 0", "max_queued_messages 1000")
                     .replace("persistence true", "persistence false"))
    broker.proc = subprocess.Popen([mosquitto_path() or "mosquitto", "-c", str(stock)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening("127.0.0.1", broker.port)
    lost_stock = _slow_subscriber_loss(stock, broker.port, users, count)
    print("slow subscriber, %d QoS1 messages: generated config lost %d, stock limits lost %d"
          % (count, lost, lost_stock))
    assert lost == 0
    assert lost_stock > 0  # the measurement can fail: stock Mosquitto does drop them
