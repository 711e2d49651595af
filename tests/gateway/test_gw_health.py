"""A gateway without swarm peers says so (issue 14, the gateway's half of point 6): /health reports
"degraded" with the reason (ok false, still HTTP 200: it works, alone), /status and `qis-gateway status`
print it, the log warns once when the last peer goes and notes when one is back; /metrics keeps the
standard process_* metrics (point 12)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from qis_gateway.health import assess
from support.broker import mosquitto_path

from .helpers import MemorySwarm, wait_for
from .test_gw_service import Site, scrape, started, stopped

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")


class LonelySwarm(MemorySwarm):
    peers = 0

    def status(self) -> dict[str, Any]:
        return dict(super().status(), peers=self.peers)


@pytest.fixture
def site(tmp_path):  # noqa: ANN001
    s = Site(tmp_path / "site", [("pump-01", "site-a")])
    yield s
    s.close()


def test_no_peers_is_degraded_and_said_plainly(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        swarm = LonelySwarm()
        with caplog.at_level(logging.INFO, logger="qis_gateway.health"):
            gw, task = await started(site.config(), swarm)
            try:
                await wait_for(lambda: gw.peer_watch.alone is True, timeout_s=10, what="peer check")
                code, body = await scrape(gw, "/health")
                health = json.loads(body)
                assert code == 200 and health["ok"] is False and health["status"] == "degraded"
                assert "no swarm peers" in health["problems"][0] and health["peers"] == 0
                code, body = await scrape(gw, "/status")
                assert json.loads(body)["health"] == "degraded"
                code, body = await scrape(gw, "/metrics")
                assert b"process_resident_memory_bytes" in body and b"process_cpu_seconds_total" in body
                swarm.peers = 3
                await wait_for(lambda: gw.peer_watch.alone is False, timeout_s=10, what="peer back")
                code, body = await scrape(gw, "/health")
                assert code == 200 and json.loads(body)["status"] == "ok" and json.loads(body)["ok"] is True
            finally:
                await stopped(gw, task)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "no swarm peers" in r.getMessage()]
        assert len(warnings) == 1 and "degraded" in warnings[0].getMessage()
        assert any("3 peer(s) now" in r.getMessage() for r in caplog.records)

    asyncio.run(scenario())


def test_assess_down_beats_degraded() -> None:
    ok, detail = assess(False, {"running": True, "peers": 0}, True)
    assert ok is False and detail["status"] == "down" and len(detail["problems"]) == 2
    ok, detail = assess(True, {"running": True, "peers": 5}, True)
    assert ok is True and detail == {**detail, "status": "ok", "ok": True, "problems": []}
