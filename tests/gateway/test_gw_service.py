"""The whole gateway in-process against a real Mosquitto: round trips over MQTT, two gateways sharing
a swarm, broker restarts with outcomes pending, refusals among good traffic, metrics/health scrape."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from qis_gateway.config import build_config
from qis_gateway.registry import Registry, board_password
from qis_gateway.service import Gateway
from support.broker import mosquitto_path

from .helpers import Board, BoardClient, MemorySwarm, SecureBroker, wait_for

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")


class Site:
    """A gateway's data dir with registered boards and a Mosquitto configured by broker-config for them."""

    def __init__(self, tmp: Path, devices: list[tuple[str, str]]) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        with Registry(tmp / "registry.sqlite") as reg:
            self.boards = {d: Board(s, d, reg.add(d, s).secret) for d, s in devices}
        self.broker = SecureBroker(tmp, tmp / "registry.sqlite")
        self.clients: list[BoardClient] = []

    def config(self, **sections: dict[str, Any]) -> Any:
        return gw_config(self.tmp, self.broker.port, **sections)

    def client(self, device: str) -> BoardClient:
        board = self.boards[device]
        c = BoardClient(board, "127.0.0.1", self.broker.port, board_password(board.secret))
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.broker.kill()


@pytest.fixture
def site(tmp_path: Path):
    s = Site(tmp_path / "site", [("pump-01", "site-a")])
    yield s
    s.close()


def gw_config(tmp: Path, port: int, **sections: dict[str, Any]) -> Any:
    data: dict[str, dict[str, Any]] = {
        "gateway": {"data_dir": str(tmp)},
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": "gw-" + tmp.name, "reconnect_min_s": 0.1,
                 "reconnect_max_s": 0.5, "username": "qis-gateway", "password": "gw-pass"},
        "swarm": {"listen": "127.0.0.1:0"},
        "synthesis": {"min_n": 1},
        "outbox": {"retry_min_s": 0.1, "retry_max_s": 0.5, "flush_rate_per_s": 200.0},
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(data, environ={})


def http_get(gw: Gateway, path: str) -> tuple[int, bytes]:
    host, port = gw.http.address
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def scrape(gw: Gateway, path: str) -> tuple[int, bytes]:
    return await asyncio.get_running_loop().run_in_executor(None, http_get, gw, path)


async def started(config: Any, swarm: MemorySwarm) -> tuple[Gateway, asyncio.Task[None]]:
    gw = Gateway(config, swarm=swarm)
    await gw.start()
    assert await gw.mqtt.wait_connected(10)
    await asyncio.sleep(0.2)  # subscriptions granted
    return gw, asyncio.get_running_loop().create_task(gw.serve())


async def stopped(gw: Gateway, task: asyncio.Task[None]) -> None:
    gw.request_stop()
    await task
    await gw.stop()


def test_fp_round_trip_metrics_and_health(site: Site) -> None:
    async def scenario() -> None:
        gw, task = await started(site.config(), MemorySwarm())
        board = site.boards["pump-01"]
        client = site.client("pump-01")
        try:
            seq = client.send(board.fp())
            await wait_for(lambda: client.got["summary"], what="summary")
            (summary,) = client.got["summary"]
            assert summary["re"] == seq and summary["n"] == 0 and summary["enough"] is False
            code, body = await scrape(gw, "/metrics")
            text = body.decode()
            assert code == 200
            assert 'qis_gateway_messages_total{kind="fp",outcome="accepted"} 1.0' in text
            assert 'qis_gateway_summaries_total{enough="false"} 1.0' in text
            assert "qis_gateway_lookup_hops_bucket" in text and "qis_gateway_outbox_depth" in text
            code, body = await scrape(gw, "/health")
            assert code == 200 and json.loads(body)["mqtt_connected"] is True
            code, body = await scrape(gw, "/status")
            assert code == 200 and json.loads(body)["devices"] == 1
            code, _ = await scrape(gw, "/nope")
            assert code == 404
            site.broker.stop()
            await wait_for(lambda: not gw.mqtt.connected, what="disconnect noticed")
            code, body = await scrape(gw, "/health")
            assert code == 503 and json.loads(body)["mqtt_connected"] is False
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())


def test_outcome_visible_from_another_gateway(site: Site, tmp_path: Path) -> None:
    shared: dict[bytes, list[bytes]] = {}
    other = Site(tmp_path / "other", [("fan-02", "site-b")])

    async def scenario() -> None:
        gw_a, task_a = await started(site.config(), MemorySwarm(shared))
        gw_b, task_b = await started(other.config(), MemorySwarm(shared))
        pump, fan = site.boards["pump-01"], other.boards["fan-02"]
        ca, cb = site.client("pump-01"), other.client("fan-02")
        try:
            seq = ca.send(pump.fp(temperature_c=90, vibration=9))
            await wait_for(lambda: ca.got["summary"], what="first summary")
            ca.send(pump.outcome(seq, "bearing_wear"))
            await wait_for(lambda: gw_a.state.stored() == 4, what="outcome stored at 4 levels")
            seq_b = cb.send(fan.fp(temperature_c=91, vibration=9.5))
            await wait_for(lambda: cb.got["summary"], what="summary at gateway B")
            (summary,) = cb.got["summary"]
            assert summary["re"] == seq_b and summary["n"] == 1 and summary["top"] == [["bearing_wear", 1000]]
        finally:
            await stopped(gw_a, task_a)
            await stopped(gw_b, task_b)

    try:
        asyncio.run(scenario())
    finally:
        other.close()


def test_broker_restart_with_outcomes_pending_loses_none(site: Site) -> None:
    swarm = MemorySwarm()
    config = site.config()
    n = 30

    async def scenario() -> None:
        gw, task = await started(config, swarm)
        board = site.boards["pump-01"]
        await stopped(gw, task)  # gateway away: its persistent session keeps collecting
        client = site.client("pump-01")
        fp_seqs = [client.send(board.fp(temperature_c=40 + i)) for i in range(n)]
        for i, s in enumerate(fp_seqs):
            client.send(board.outcome(s, "ok" if i % 2 else "fault"))
        client.close()
        site.broker.restart()  # SIGTERM: Mosquitto saves the queued session messages
        gw, task = await started(config, swarm)
        try:
            await wait_for(lambda: gw.state.stored() == 4 * n, 20, "all outcomes stored")
            # the broker restarting under a running gateway: it reconnects by itself, nothing is lost
            site.broker.restart()
            client = site.client("pump-01")
            seq = client.send(board.fp())
            client.send(board.outcome(seq, "late"))
            await wait_for(lambda: gw.state.stored() == 4 * (n + 1), 20, "outcome after reconnect")
            await wait_for(lambda: any(s["re"] == seq for s in client.got["summary"]), what="summary")
        finally:
            await stopped(gw, task)
        assert gw.mqtt.connects >= 2
        assert sum(len(v) for v in swarm.shared.values()) == 4 * (n + 1)

    asyncio.run(scenario())


def test_refusals_counted_while_good_traffic_is_answered(site: Site) -> None:
    async def scenario() -> None:
        gw, task = await started(site.config(), MemorySwarm())
        good = site.boards["pump-01"]
        client = site.client("pump-01")
        # a board the broker lets in but the gateway does not know (e.g. registry restored from backup)
        ghost = BoardClient(Board("site-a", "qis-gateway", b"k" * 32), "127.0.0.1", site.broker.port, "gw-pass")
        site.clients.append(ghost)
        try:
            t, frame, _ = good.fp()
            client.client.publish(t, frame[:-1] + bytes([frame[-1] ^ 0xFF]), qos=1).wait_for_publish(5)  # bad tag
            ghost.client.publish("qis/v1/site-a/ghost/fp", frame, qos=1).wait_for_publish(5)  # unknown device
            client.client.publish(t, b"\x00garbage", qos=1).wait_for_publish(5)
            seq = client.send((t, frame, good.seq))
            client.client.publish(t, frame, qos=1).wait_for_publish(5)  # exact copy: a duplicate, re-answered
            await wait_for(lambda: len(client.got["summary"]) >= 2, what="answers")
            good.seq = 0
            client.send(good.fp(temperature_c=20))  # old seq, new content: replay
            await wait_for(lambda: len(client.got["error"]) >= 3, what="errors")
            assert {e["code"] for e in client.got["error"]} == {"tag", "size", "replay"}
            assert all(s["re"] == seq for s in client.got["summary"])
            reg = gw.metrics.registry
            for reason in ("tag", "unknown_device", "size", "replay"):
                assert reg.get_sample_value("qis_gateway_rejections_total", {"reason": reason}) == 1, reason
            assert reg.get_sample_value("qis_gateway_messages_total", {"kind": "fp", "outcome": "duplicate"}) == 1
            assert [s["re"] for s in client.got["summary"]] == [seq, seq]
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", ["5"])
def test_mqtt5_session(site: Site, protocol: str) -> None:
    async def scenario() -> None:
        config = site.config(mqtt={"protocol": protocol})
        gw, task = await started(config, MemorySwarm())
        board = site.boards["pump-01"]
        await stopped(gw, task)
        client = site.client("pump-01")
        seq = client.send(board.fp())  # sent while the gateway is away
        gw, task = await started(config, MemorySwarm())
        try:
            await wait_for(lambda: client.got["summary"], what="summary after the session resumed")
            assert client.got["summary"][0]["re"] == seq
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())


def test_outcome_travels_through_a_real_udp_swarm(site: Site, tmp_path: Path) -> None:
    """Two gateways and three plain nodes, real UDP on loopback: an outcome stored via gateway A shows up
    in the summary gateway B gives its own board; hops are measured."""
    from qis_gateway.swarm.api import UdpSwarm

    other = Site(tmp_path / "other", [("fan-02", "site-b")])

    async def scenario() -> None:
        nodes = [UdpSwarm(("127.0.0.1", 0), tmp_path / ("node%d" % i)) for i in range(3)]
        await nodes[0].start()
        for node in nodes[1:]:
            node.bootstrap_addrs = [nodes[0].address]
            await node.start()
        seed = "127.0.0.1:%d" % nodes[0].address[1]
        gw_a = Gateway(site.config(swarm={"listen": "127.0.0.1:0", "bootstrap": [seed]}))
        gw_b = Gateway(other.config(swarm={"listen": "127.0.0.1:0", "bootstrap": [seed]}))
        tasks = []
        for gw in (gw_a, gw_b):
            await gw.start()
            assert await gw.mqtt.wait_connected(10)
            tasks.append(asyncio.get_running_loop().create_task(gw.serve()))
        await asyncio.sleep(0.2)
        pump, fan = site.boards["pump-01"], other.boards["fan-02"]
        ca, cb = site.client("pump-01"), other.client("fan-02")
        try:
            seq = ca.send(pump.fp(temperature_c=90, vibration=9))
            await wait_for(lambda: ca.got["summary"], what="first summary")
            assert ca.got["summary"][0]["n"] == 0
            ca.send(pump.outcome(seq, "bearing_wear", value=3.5))
            await wait_for(lambda: gw_a.state.stored() == 4, 15, "outcome stored in the swarm")
            seq_b = cb.send(fan.fp(temperature_c=91, vibration=9.5))
            await wait_for(lambda: cb.got["summary"], 15, "summary at gateway B")
            (summary,) = cb.got["summary"]
            assert summary["re"] == seq_b and summary["n"] == 1 and summary["top"] == [["bearing_wear", 1000]]
            assert summary["hops"] >= 1
            text = (await scrape(gw_b, "/metrics")).__getitem__(1).decode()
            assert "qis_gateway_lookup_hops_count 1.0" in text
            assert gw_a.metrics.registry.get_sample_value("qis_gateway_packets_stored_total") == 4
        finally:
            for gw, task in zip((gw_a, gw_b), tasks, strict=True):
                await stopped(gw, task)
            for node in nodes:
                await node.stop(graceful=False)

    try:
        asyncio.run(scenario())
    finally:
        other.close()


def test_home_assistant_discovery_resent_on_birth(site: Site) -> None:
    async def scenario() -> None:
        gw, task = await started(site.config(homeassistant={"enabled": True}), MemorySwarm())
        ha = BoardClient(Board("site-a", "qis-gateway", b"k" * 32), "127.0.0.1", site.broker.port, "gw-pass")
        site.clients.append(ha)
        seen: list[tuple[str, bytes, bool]] = []
        ha.client.on_message = lambda c, u, m: seen.append((m.topic, m.payload, m.retain))
        ha.client.subscribe("homeassistant/sensor/#", 1)
        ha.client.subscribe("qis-ha/#", 1)
        client = site.client("pump-01")
        try:
            await wait_for(lambda: any(t.endswith("/config") for t, _, _ in seen), what="retained discovery")
            assert seen[0][2] is True  # delivered from the retained store
            count = len([t for t, _, _ in seen if t.endswith("/config")])
            ha.client.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
            await wait_for(lambda: len([t for t, _, _ in seen if t.endswith("/config")]) > count,
                           what="discovery re-sent after Home Assistant's birth message")
            client.send(site.boards["pump-01"].fp())
            await wait_for(lambda: any(t == "qis-ha/site-a/pump-01/state" for t, _, _ in seen), what="HA state")
            state = json.loads([p for t, p, _ in seen if t == "qis-ha/site-a/pump-01/state"][-1])
            assert state["outcome"] == "unknown" and state["n"] == 0
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())


def test_message_not_acknowledged_until_stored_is_redelivered(site: Site) -> None:
    """manual_ack at work: storing an outcome keeps failing (disk error), so the gateway retries it, holds the
    next frame behind it, reports unhealthy and sends no PUBACK. Stopped and restarted with a healthy disk,
    the broker redelivers both in order and both are handled. With ack-on-receipt the outcome would be lost
    (checked by flipping manual_ack)."""
    import sqlite3

    config = site.config()
    board = site.boards["pump-01"]

    async def scenario() -> None:
        gw, task = await started(config, MemorySwarm())
        client = site.client("pump-01")
        failures: list[int] = []

        def broken(*args: Any, **kwargs: Any) -> None:
            failures.append(1)
            raise sqlite3.OperationalError("disk I/O error (simulated)")

        try:
            seq = client.send(board.fp())
            await wait_for(lambda: client.got["summary"], what="summary")
            gw.state.record_outcome = broken  # type: ignore[method-assign]
            client.send(board.outcome(seq, "ok"))
            later = client.send(board.fp(temperature_c=70))
            await wait_for(lambda: len(failures) >= 2, what="retries")
            code, body = await scrape(gw, "/health")
            assert code == 503 and json.loads(body)["storage_ok"] is False
            assert len(client.got["summary"]) == 1  # the later fp waits behind the failing outcome
        finally:
            await stopped(gw, task)
        gw, task = await started(config, MemorySwarm())
        try:
            await wait_for(lambda: gw.state.stored() == 4, 20, "redelivered outcome stored")
            await wait_for(lambda: any(s["re"] == later for s in client.got["summary"]), what="later fp answered")
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())


def test_outcome_held_while_the_clock_is_wrong_is_stored_once_it_is_right(site: Site) -> None:
    """Issue 18 point 10 through the service: the housekeeping loop signs held outcomes once the clock is right."""
    import time

    async def scenario() -> None:
        gw, task = await started(site.config(), MemorySwarm())
        board = site.boards["pump-01"]
        client = site.client("pump-01")
        try:
            gw.bridge.clock = lambda: 1_735_000_000.0  # 2024-12: a Pi that booted without network time
            seq = client.send(board.fp())
            await wait_for(lambda: client.got["summary"], what="summary")
            client.send(board.outcome(seq, "ok"))
            await wait_for(lambda: gw.state.held_count() == 1, what="outcome held")
            code, body = await scrape(gw, "/status")
            assert json.loads(body)["outcomes_held"] == 1
            await asyncio.sleep(2.5)  # a housekeeping round with the wrong clock signs nothing
            assert gw.state.held_count() == 1 and gw.state.stored() == 0 and gw.state.pending() == 0
            gw.bridge.clock = time.time  # network time arrives
            await wait_for(lambda: gw.state.stored() == 4, 15, what="held outcome signed and stored")
            assert gw.state.held_count() == 0
            code, body = await scrape(gw, "/metrics")
            assert "qis_gateway_signing_refused_total 1.0" in body.decode()
        finally:
            await stopped(gw, task)

    asyncio.run(scenario())
