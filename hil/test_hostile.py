"""Hostile parties: a Byzantine swarm member storing bad packets, and bad boards (unknown, wrong secret,
replays, garbage floods). All refused and counted; good boards still served."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hil_checks import BACKENDS, assert_boards_finish, assert_every_reading_answered, board_log, wait_answered
from paho.mqtt.enums import CallbackAPIVersion
from qis import messages
from qis.schema import load_schema
from qis.topics import topic
from qis_gateway.harness.system import LocalSystem

pytestmark = [pytest.mark.hil, pytest.mark.slow]
HERE = Path(__file__).resolve().parent


def swarm_rejections(system: LocalSystem) -> int:
    """Bad values refused by the swarm layer itself (STOREs refused, values filtered on read)."""
    total = 0
    for gw in system.gateways:
        counters = system.gateway_status(gw.index)["swarm"].get("counters", {})
        total += counters.get("drop_invalid_value", 0) + counters.get("rejected", 0)
    return total


@pytest.mark.parametrize("backend", BACKENDS)
def test_byzantine_packets_never_reach_a_summary(make_system: Callable[..., LocalSystem], backend: str) -> None:
    n = 8
    system = make_system(gateways=4, sites=1, boards=0, readings=n, interval_s=0.5, min_n=1, backend=backend,
                         trust=True, sensor_mode="cycle")
    system.prepare()
    boards = [system.add_board("pump-%d" % i, 0, seed=i + 1, machine_class="pump") for i in range(2)]
    system.start_gateways()
    system.start_observers()
    gw0 = system.gateways[0]
    proc = system.procs.start("byzantine", [
        sys.executable, str(HERE / "byzantine.py"), "--backend", backend, "--bootstrap",
        "127.0.0.1:%d" % gw0.udp_port, "--data", str(system.workdir / "byz"),
        "--honest-key", str(gw0.dir / "gateway.key"), "--machine-class", "pump"])
    deadline = time.monotonic() + 90
    while "BYZ-READY" not in system.procs.log_text("byzantine") and time.monotonic() < deadline:
        assert proc.poll() is None, system.procs.log_text("byzantine")
        time.sleep(0.2)
    assert "BYZ-READY" in system.procs.log_text("byzantine")

    system.start_boards(boards)
    assert_boards_finish(system, boards, 120)
    assert wait_answered(system, boards, n, 60)
    labels = set()
    for board in boards:
        assert_every_reading_answered(system, board, n)
        for body, _ in board_log(system, board).summaries:
            labels.update(label for label, _ in body["top"])
    assert not [lab for lab in labels if lab.startswith("BYZ")], labels
    assert labels, "no summary had evidence: the test would prove nothing"
    # Counted: gateways' packet verifier and/or the swarm's own validator refused them.
    refused = system.metric_sum("qis_gateway_invalid_packets_total") + swarm_rejections(system)
    assert refused > 0


class Rogue:
    """A misbehaving MQTT client on a site broker."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue-%d" % os.getpid())
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic_name: str, payload: bytes) -> None:
        self.client.publish(topic_name, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_bad_boards_are_refused_while_good_boards_are_served(make_system: Callable[..., LocalSystem]) -> None:
    n = 12
    system = make_system(gateways=3, sites=1, boards=2, readings=n, interval_s=0.5)
    system.start()
    site, gw = system.gateways[0].site, system.gateways[0]
    goods = list(system.boards)
    # A known device (registered, never started: the attacker plays it) whose secret the attacker
    # does not have, and a device nobody registered.
    victim = system.add_board("victim", 0, seed=3)
    schema = load_schema(str(Path(messages.__file__).parent / "schemas" / "machine_health.json"))
    reading = {"machine_class": "pump", "temperature_c": 50, "vibration_mm_s": 2.0, "load_pct": 50, "current_a": 9}
    fp = schema.fingerprint(reading)
    system.start_boards(goods)
    obs = system.observers[0]
    assert obs.wait_until(lambda: all(len(board_log(system, b).summaries) >= 2 for b in goods), 30)
    baseline = list(obs.latencies_ms())
    rogue = Rogue(gw.broker.host, gw.broker.port)
    try:
        rogue.send(topic(site, "nobody", "fp"), messages.encode_fp("nobody", 1, fp, b"k" * 32))
        for seq in range(1, 4):
            rogue.send(topic(site, "victim", "fp"), messages.encode_fp("victim", seq, fp, b"wrong secret"))
        good = messages.encode_fp("victim", 7, fp, victim.secret)
        rogue.send(topic(site, "victim", "fp"), good)
        time.sleep(0.5)
        for _ in range(3):  # replays of a frame the gateway already accepted: duplicates, no second effect
            rogue.send(topic(site, "victim", "fp"), good)
        # an authentic frame with a seq below the last accepted one (held back, then let loose): a replay
        rogue.send(topic(site, "victim", "fp"), messages.encode_fp("victim", 6, fp, victim.secret))
        for i in range(300):  # garbage flood, on a good board's topic and on a made-up one
            rogue.send(topic(site, "board-0" if i % 2 else "junk", "fp"), os.urandom(i % 200))
    finally:
        rogue.close()
    assert_boards_finish(system, goods, 120)
    assert wait_answered(system, goods, n, 60)
    for board in goods:
        assert_every_reading_answered(system, board, n)

    def rejected(reason: str) -> float:
        return system.metric_sum('qis_gateway_rejections_total{reason="%s"}' % reason, [0])

    obs.wait_until(lambda: rejected("tag") >= 3, 10)
    samples = {k: v for k, v in system.gateway_metrics(0).items() if k.startswith("qis_gateway_rejections_total")}
    total = sum(samples.values())
    assert total >= 1 + 3 + 1 + 300, json.dumps(samples)
    assert rejected("tag") >= 3, samples
    assert rejected("unknown_device") >= 1, samples
    assert rejected("replay") >= 1, samples
    duplicates = system.metric_sum('qis_gateway_messages_total{kind="fp",outcome="duplicate"}', [0])
    assert duplicates >= 3
    # The victim's one genuine frame was answered on its own topic, the forgeries were not.
    answered_victim = {body["re"] for body, _ in board_log(system, victim).summaries}
    assert answered_victim == {7}
    # Good boards kept their normal latency through the flood.
    during = obs.latencies_ms()[len(baseline):]
    assert during and statistics.median(during) < max(1000.0, 5 * statistics.median(baseline)), (baseline, during)
