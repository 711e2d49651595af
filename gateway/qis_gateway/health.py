"""What `/health`, `/status`, `qis-gateway status` and the log say about the gateway's condition.

How it works: `assess` turns the parts' states into one of three words. "down": the broker connection,
the swarm node, the disk or the outbox is not working (HTTP 503). "degraded": it works, but the swarm node has no
peers, so this gateway is a swarm of one: its boards' outcomes are stored and answered here only and no
other site learns from them (HTTP 200, `"ok": false`, and the reason in `problems`). "ok": none of
that. `PeerWatch` logs the change into and out of "no peers" once per change (WARNING / INFO), never
once per failed put.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("qis_gateway.health")

NO_PEERS = ("no swarm peers: this gateway is a swarm of one (its boards' outcomes are stored and answered "
            "here only); set [swarm] bootstrap to another gateway's HOST:PORT to share them")


def assess(mqtt_connected: bool, swarm: dict[str, Any], storage_ok: bool,
           outbox_blocked: str | None = None) -> tuple[bool, dict[str, Any]]:
    """(serve HTTP 200?, the JSON body of /health)."""
    problems: list[str] = []
    down = False
    if not mqtt_connected:
        problems.append("not connected to the MQTT broker")
        down = True
    if not swarm.get("running", True):
        problems.append("the swarm node is not running")
        down = True
    if not storage_ok:
        problems.append("storage failing (SQLite or the disk); messages wait unacknowledged")
        down = True
    if outbox_blocked is not None:
        problems.append("outcome packets are not being stored: %s" % outbox_blocked)
        down = True
    peers = swarm.get("peers")
    if swarm.get("running", True) and peers == 0:
        problems.append(NO_PEERS)
    state = "down" if down else ("degraded" if problems else "ok")
    return not down, {"ok": state == "ok", "status": state, "problems": problems, "peers": peers,
                      "mqtt_connected": mqtt_connected, "swarm_running": bool(swarm.get("running", True)),
                      "storage_ok": storage_ok, "outbox_blocked": outbox_blocked}


class PeerWatch:
    """Logs when the swarm node loses its last peer or gets one again (once per change)."""

    def __init__(self) -> None:
        self.alone: bool | None = None

    def update(self, peers: int | None) -> None:
        if peers is None:
            return
        alone = peers == 0
        if alone == self.alone:
            return
        if alone:
            log.warning("degraded: %s", NO_PEERS)
        elif self.alone is not None:
            log.info("swarm: %d peer(s) now; outcomes are shared with the swarm again", peers)
        self.alone = alone
