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
        self.signing_refused = Counter(
            "qis_gateway_signing_refused", "Outcomes not signed at admission because the wall clock was clearly "
            "wrong (held, signed later)", registry=r)
        self.outcomes_held = Gauge("qis_gateway_outcomes_held", "Accepted outcomes waiting for a trustworthy clock "
                                   "to be signed", registry=r)
        self.incoming_dropped = Counter("qis_gateway_incoming_dropped", "QoS 0 messages dropped: incoming queue full",
                                        registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


MAX_LINE_BYTES = 8192  # a request line or header longer than this is refused (431), as web servers do
MAX_HEADERS = 100
REQUEST_TIMEOUT_S = 5.0  # the whole request (line and headers) must arrive within this
RESPONSE_TIMEOUT_S = 10.0  # and the whole answer be taken within this: slow clients are cut off
MAX_CLIENTS = 32  # connections served at once; more are answered 503 and closed at once


class HttpEndpoint:
    """GET /metrics | /health | /status on (host, port); port 0 picks a free one (see `.address`).

    Hostile or broken clients cost little: a request line or header over MAX_LINE_BYTES gets 431, more than
    MAX_HEADERS headers 431, a request not complete within REQUEST_TIMEOUT_S (a slow client) is closed, an
    answer not taken within RESPONSE_TIMEOUT_S is dropped, and beyond MAX_CLIENTS connections at once the
    next ones get 503. None of these is logged with a traceback; `refused` counts them by reason."""

    def __init__(self, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]],
                 status: Callable[[], dict[str, Any]], *, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 response_timeout_s: float = RESPONSE_TIMEOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        self._metrics = metrics
        self._health = health
        self._status = status
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None
        self.request_timeout_s = request_timeout_s
        self.response_timeout_s = response_timeout_s
        self.max_clients = max_clients
        self._clients = 0
        self.refused: dict[str, int] = {}

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE_BYTES)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("metrics and health on http://%s:%d/", *self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1
        log.debug("metrics endpoint refused a request: %s", why)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            if self._clients > self.max_clients:
                self._refuse("busy")
                await self._answer(writer, 503, "text/plain", b"too many clients\n")
                return
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    line = await reader.readline()
                    headers = 0
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        headers += 1
                        if headers > MAX_HEADERS:
                            raise ValueError("more than %d headers" % MAX_HEADERS)
            except TimeoutError:
                self._refuse("slow")
                return
            except ValueError:  # a line over the limit (the reader's LimitOverrunError) or too many headers
                self._refuse("too_long")
                await self._answer(writer, 431, "text/plain", b"request line or headers too long\n")
                return
            code, ctype, body = self._route(line)
            await self._answer(writer, code, ctype, body)
        except (TimeoutError, ConnectionError):
            pass
        except Exception:  # never let one bad scrape kill the endpoint
            log.exception("metrics endpoint failed on a request")
        finally:
            self._clients -= 1
            writer.close()

    def _route(self, line: bytes) -> tuple[int, str, bytes]:
        parts = line.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        if len(parts) < 2 or parts[0] != "GET":
            return 405, "text/plain", b"only GET\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self._metrics.render()
        if path == "/health":
            ok, detail = self._health()
            return (200 if ok else 503), "application/json", json.dumps(detail).encode()
        if path == "/status":
            return 200, "application/json", json.dumps(self._status()).encode()
        return 404, "text/plain", b"try /metrics, /health or /status\n"

    async def _answer(self, writer: asyncio.StreamWriter, code: int, ctype: str, body: bytes) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large",
                  503: "Service Unavailable"}[code]
        writer.write(b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % (code, reason.encode(), ctype.encode(), len(body)) + body)
        async with asyncio.timeout(self.response_timeout_s):
            await writer.drain()
