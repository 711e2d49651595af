"""Home Assistant discovery (issue 14, point 9): payloads valid by Home Assistant's own MQTT schema rules
(tests/support/ha_discovery.py), an availability topic, boards added or revoked while the gateway runs
appear or disappear without a restart (a revoked board's retained config is cleared with an empty
retained payload), and a config left behind by a removed board is cleared when the gateway connects."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from qis_gateway.homeassistant import HomeAssistant, availability_topic
from qis_gateway.registry import DeviceRecord, Registry
from support.broker import mosquitto_path
from support.ha_discovery import check_sensor_discovery

from .helpers import Board, BoardClient, MemorySwarm, wait_for
from .test_gw_service import Site, started, stopped

RECORD = DeviceRecord("Pump-01", "plant-a", b"k" * 32, -1, False)


def test_discovery_payload_passes_home_assistants_rules() -> None:
    ha = HomeAssistant(lambda *a: None)
    topic, config = ha.discovery(RECORD)
    assert topic == "homeassistant/sensor/qis_plant-a_Pump-01/config"
    assert check_sensor_discovery(config) == []
    assert config["default_entity_id"] == "sensor.qis_plant_a_pump_01_outcome" and "object_id" not in config
    assert config["availability_topic"] == availability_topic("qis-gateway")


def test_the_checker_refuses_what_home_assistant_refuses() -> None:
    _, good = HomeAssistant(lambda *a: None).discovery(RECORD)
    assert check_sensor_discovery({**good, "object_id": "x"})  # the old payload
    assert check_sensor_discovery({**good, "default_entity_id": "qis_x"})
    assert check_sensor_discovery({**good, "default_entity_id": "sensor.Bad-Id"})
    assert check_sensor_discovery({k: v for k, v in good.items() if k != "state_topic"})
    assert check_sensor_discovery({**good, "device": {"name": "x"}})
    assert check_sensor_discovery({**good, "state_topic": "a/#/b"})


@pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")
def test_boards_come_and_go_without_a_restart(tmp_path) -> None:  # noqa: ANN001
    site = Site(tmp_path / "site", [("pump-01", "site-a"), ("gone-09", "site-a")])
    # A config a removed board left behind (the gateway was down when it was removed).
    stale = BoardClient(Board("site-a", "qis-gateway", b"k" * 32), "127.0.0.1", site.broker.port, "gw-pass")
    stale.client.publish("homeassistant/sensor/qis_site-a_old-07/config", b'{"name": "x"}', qos=1,
                         retain=True).wait_for_publish(5)
    stale.close()
    with Registry(site.tmp / "registry.sqlite") as reg:
        reg.remove("gone-09")

    async def scenario() -> None:
        # The observer subscribes before the gateway starts: a config the gateway clears at once is then
        # seen being cleared (subscribing later would find nothing retained, and no empty payload either).
        ha = BoardClient(Board("site-a", "qis-gateway", b"k" * 32), "127.0.0.1", site.broker.port, "gw-pass")
        site.clients.append(ha)
        seen: list[tuple[str, bytes, bool]] = []
        ha.client.on_message = lambda c, u, m: seen.append((m.topic, m.payload, m.retain))
        ha.client.subscribe("homeassistant/sensor/#", 1)
        ha.client.subscribe("qis-ha/gateway/#", 1)

        def last(topic: str) -> bytes | None:
            got = [p for t, p, _ in seen if t == topic]
            return got[-1] if got else None

        cfg = "homeassistant/sensor/qis_site-a_%s/config"
        await wait_for(lambda: last(cfg % "old-07") is not None, what="observer subscribed (the stale config)")
        gw, task = await started(site.config(homeassistant={"enabled": True}), MemorySwarm())
        try:
            await wait_for(lambda: last(cfg % "pump-01") is not None, what="discovery")
            assert check_sensor_discovery(json.loads(last(cfg % "pump-01") or b"{}")) == []
            assert gw.ha is not None
            avail = gw.ha.availability
            await wait_for(lambda: last(avail) == b"online", what="gateway online")
            await wait_for(lambda: last(cfg % "old-07") == b"", what="stale config cleared")
            with Registry(site.tmp / "registry.sqlite") as reg:
                reg.add("fan-02", "site-a")
            started_s = time.monotonic()
            await wait_for(lambda: last(cfg % "fan-02") is not None, timeout_s=15, what="new board announced")
            print("new board announced %.1f s after device add" % (time.monotonic() - started_s))
            with Registry(site.tmp / "registry.sqlite") as reg:
                reg.revoke("pump-01")
            await wait_for(lambda: last(cfg % "pump-01") == b"", timeout_s=15, what="revoked board cleared")
        finally:
            await stopped(gw, task)
        await wait_for(lambda: last(avail) == b"offline", what="offline on stop")

    try:
        asyncio.run(scenario())
    finally:
        site.close()
