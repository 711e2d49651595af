"""Prometheus metrics and the small HTTP endpoint that serves /metrics, /health and /status.

How it works: `Metrics` owns its own `CollectorRegistry` (so several gateways can run in one test
process) with the standard `process_*` collector, and names every instrument the bridge updates.
`HttpEndpoint` is a minimal asyncio HTTP/1.0 server (no thread): GET /metrics returns the text exposition
format, /health a JSON body with 200 while the gateway works ("ok", or "degraded": no swarm peers) and
503 when it is down (qis_gateway.health), /status the JSON the `qis-gateway status` command prints.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # The standard process_* metrics (resident memory, CPU seconds, open files, start time), which a
        # registry of our own does not get by default: what a Pi's Prometheus graphs first.
        ProcessCollector(registry=r)
        self.messages = Counter("qis_gateway_messages", "Board messages by kind and outcome",
                                ["kind", "outcome"], registry=r)
        self.rejections = Counter("qis_gateway_rejections", "Refused board messages by reason", ["reason"],
                                  registry=r)
        self.invalid_packets = Counter("qis_gateway_invalid_packets", "Swarm packets that failed verification",
                                       ["reason"], registry=r)
        self.packets_stored = Counter("qis_gateway_packets_stored", "Outcome packets stored in the swarm",
                                      registry=r)
        self.put_failures = Counter("qis_gateway_put_failures", "Outcome packet puts that will be retried",
                                    registry=r)
        self.summaries = Counter("qis_gateway_summaries", "Summaries published", ["enough"], registry=r)
        self.lookup_hops = Histogram("qis_gateway_lookup_hops", "Swarm lookup rounds per address",
                                     buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20), registry=r)
        self.lookup_seconds = Histogram("qis_gateway_lookup_seconds", "Swarm lookup latency per address",
                                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                        registry=r)
        self.fp_seconds = Histogram("qis_gateway_fp_seconds", "fp received -> summary published",
                                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                    registry=r)
        self.queue_depth = Gauge("qis_gateway_outbox_depth", "Outcome packets waiting to be stored", registry=r)
        self.mqtt_connected = Gauge("qis_gateway_mqtt_connected", "1 while connected to the broker", registry=r)
        self.swarm_peers = Gauge("qis_gateway_swarm_peers", "Contacts in the swarm routing table", registry=r)
        self.shed = Counter("qis_gateway_shed", "fps not answered because the gateway was overloaded, by reason",
                            ["reason"], registry=r)
        self.error_answers_suppressed = Counter(
            "qis_gateway_error_answers_suppressed", "Refusals not answered on the device's error topic: its error "
            "budget was spent (a few a minute per device)", ["reason"], registry=r)
        self.incoming_dropped = Counter("qis_gateway_incoming_dropped", "QoS 0 messages dropped: incoming queue full",
                                        registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpEndpoint:
    """GET /metrics | /health | /status on (host, port); port 0 picks a free one (see `.address`)."""

    def __init__(self, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]],
                 status: Callable[[], dict[str, Any]]) -> None:
        self._metrics = metrics
        self._health = health
        self._status = status
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("metrics and health on http://%s:%d/", *self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] != "GET":
                code, ctype, body = 405, "text/plain", b"only GET\n"
            elif path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE_LATEST, self._metrics.render()
            elif path == "/health":
                ok, detail = self._health()
                code, ctype, body = (200 if ok else 503), "application/json", json.dumps(detail).encode()
            elif path == "/status":
                code, ctype, body = 200, "application/json", json.dumps(self._status()).encode()
            else:
                code, ctype, body = 404, "text/plain", b"try /metrics, /health or /status\n"
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[code]
            writer.write(b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (code, reason.encode(), ctype.encode(), len(body)) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        except Exception:  # never let one bad scrape kill the endpoint
            log.exception("metrics endpoint failed on a request")
        finally:
            writer.close()
