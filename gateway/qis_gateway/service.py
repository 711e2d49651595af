"""The gateway process: wires config, registry, state, swarm, MQTT, bridge, flusher and metrics together.

How it works: `Gateway.start()` opens the SQLite files, loads (or creates) the signing key and the
schemas, starts the swarm node (its validator verifies packets through the shared cache), the metrics
endpoint, the outbox flusher and the MQTT client. `Gateway.serve()` reads board messages in arrival
order: `bridge.admit` decides and durably records each synchronously, the message is PUBACKed only
then (a disk error retries the same message with backoff, holding the later ones behind it), and an
admitted fp's lookup + summary runs as a task (at most `MAX_ANSWERS` at once, which also bounds how far
ahead of the answers the reader runs). SIGTERM/SIGINT set a stop flag: the reader stops,
answers in flight finish (bounded), the flusher finishes its current put, paho gets its queued
publishes out, the swarm node leaves gracefully, then the files close. Nothing unacknowledged is lost:
the broker keeps it in the persistent session.

`run_service(config)` is `qis-gateway run`; `lookup_main`/`status_main` back the CLI subcommands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from qis.schema import Schema, load_schema
from qis.topics import subscription

from qis_gateway import memtrace
from qis_gateway.backend import Swarm, is_unavailable, make_swarm, make_udp_swarm
from qis_gateway.bridge import Bridge, SynthesisSettings
from qis_gateway.config import GatewayConfig, parse_hostport
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.homeassistant import HomeAssistant
from qis_gateway.metrics import HttpEndpoint, Metrics
from qis_gateway.mqtt_client import Incoming, MqttClient, MqttSettings
from qis_gateway.outbox import StateDB
from qis_gateway.packets import VerifiedPacketCache, make_validator
from qis_gateway.registry import Registry

# Verified packets kept so each is verified once (LRU). Every swarm node verifies every packet stored at it,
# so the cache fills with the swarm's newest packets: in the HIL soak (24,000 packets in 10 minutes) it was
# the site gateways' RSS growth (50 -> 76-78 MB with 20,000 entries of ~840 bytes). An entry is ~405 bytes
# since cached packets share their repeated fields; 10,000 entries (~4 MB, ~5 MB resident) measured the
# same hit ratio as 20,000 under the soak's workload (75% vs 73%, bench/bench_gateway_mem.py).
VERIFIED_CACHE_ENTRIES = 10_000

log = logging.getLogger(__name__)

MAX_ANSWERS = 64
PRUNE_EVERY_S = 3600.0
STORAGE_RETRY_MIN_S = 0.2
STORAGE_RETRY_MAX_S = 30.0


def load_schemas(extra: list[str], base: Path) -> dict[str, Schema]:
    """The packaged schemas plus the configured files, by schema id."""
    out: dict[str, Schema] = {}
    for entry in sorted(resources.files("qis").joinpath("schemas").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            schema = Schema(json.loads(entry.read_text()))
            out[schema.schema_id] = schema
    for name in extra:
        path = Path(name) if Path(name).is_absolute() else base / name
        schema = load_schema(str(path))
        out[schema.schema_id] = schema
    return out


def mqtt_settings(config: GatewayConfig, subscriptions: tuple[tuple[str, int], ...]) -> MqttSettings:
    g = config.get
    return MqttSettings(host=g("mqtt", "host"), port=g("mqtt", "port"), protocol=g("mqtt", "protocol"),
                        client_id=g("mqtt", "client_id"), username=g("mqtt", "username"),
                        password=g("mqtt", "password"), tls=g("mqtt", "tls"), keepalive_s=g("mqtt", "keepalive_s"),
                        session_expiry_s=g("mqtt", "session_expiry_s"),
                        reconnect_min_s=g("mqtt", "reconnect_min_s"), reconnect_max_s=g("mqtt", "reconnect_max_s"),
                        subscriptions=subscriptions)


class Gateway:
    def __init__(self, config: GatewayConfig, swarm: Swarm | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self._swarm_override = swarm
        self._stop = asyncio.Event()
        self._answers: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(MAX_ANSWERS)
        self.http: HttpEndpoint | None = None
        self.ha: HomeAssistant | None = None
        self.started_s = time.time()
        self.storage_ok = True

    async def start(self) -> None:
        from qis_gateway.keys import generate_key_file, load_signing_key

        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = c.key_path
        self.signing_key = load_signing_key(key_path) if key_path.exists() else generate_key_file(key_path)
        trusted = [bytes.fromhex(k) for k in c.get("gateway", "trusted_keys")] or None
        self.schemas = load_schemas(c.get("gateway", "schemas"), c.source.parent if c.source else Path.cwd())
        self.registry = Registry(c.registry_path)
        self.state = StateDB(c.state_path)
        self.cache = VerifiedPacketCache(VERIFIED_CACHE_ENTRIES)
        if self._swarm_override is not None:
            self.swarm = self._swarm_override
        else:
            listen = parse_hostport(c.get("swarm", "listen"), "swarm.listen")
            boot = [parse_hostport(b, "swarm.bootstrap") for b in c.get("swarm", "bootstrap")]
            self.swarm = make_swarm(c.get("swarm", "backend"), listen, c.data_dir / "swarm", boot,
                                    make_validator(self.cache, trusted), c.get("swarm", "rate_limit_per_s"),
                                    c.get("swarm", "opendht_network"))
        await self.swarm.start()
        subs = [(subscription("fp"), 1), (subscription("outcome"), 1)]
        if c.get("homeassistant", "enabled"):
            self.ha = HomeAssistant(self._publish, c.get("homeassistant", "prefix"))
            subs.append((self.ha.birth_topic, 1))
        self.mqtt = MqttClient(mqtt_settings(c, tuple(subs)), on_connect=self._on_connect)
        settings = SynthesisSettings(min_n=c.get("synthesis", "min_n"), half_life_s=c.get("synthesis", "half_life_s"),
                                     max_per_signer=c.get("synthesis", "max_per_signer"),
                                     top=c.get("synthesis", "top"), lookup_limit=c.get("swarm", "lookup_limit"),
                                     level_policy=c.get("synthesis", "level_policy"))
        self.bridge = Bridge(self.registry, self.state, self.swarm, self.schemas, self.signing_key, self.cache,
                             self._publish, self.metrics, settings=settings, trusted_keys=trusted,
                             reject_log_interval_s=c.get("log", "reject_interval_s"),
                             on_summary=self.ha.on_summary if self.ha else None)
        self.flusher = OutboxFlusher(self.state, self.swarm, self.metrics,
                                     rate_per_s=c.get("outbox", "flush_rate_per_s"),
                                     retry_min_s=c.get("outbox", "retry_min_s"),
                                     retry_max_s=c.get("outbox", "retry_max_s"))
        self.bridge.outbox_wakeup = self.flusher.wake
        listen_text = c.get("metrics", "listen")
        if listen_text:
            self.http = HttpEndpoint(self.metrics, self.health, self.status)
            await self.http.start(*parse_hostport(listen_text, "metrics.listen"))
        self.flusher.start()
        self.mqtt.start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep(), name="housekeeping")
        log.info("gateway started: %d schema(s), %d device(s), %d outcome packet(s) queued",
                 len(self.schemas), len(self.registry.list()), self.state.pending())

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.mqtt.publish(topic, payload, qos, retain)

    def _on_connect(self, session_present: bool) -> None:
        self.metrics.mqtt_connected.set(1)
        if self.ha is not None:
            self.ha.announce(self.registry.list())

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        """Handle board messages until request_stop()."""
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                get = asyncio.ensure_future(self.mqtt.next_message())
                await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                await self._handle(get.result())
        finally:
            stop_wait.cancel()

    async def _handle(self, msg: Incoming) -> None:
        if self.ha is not None and msg.topic == self.ha.birth_topic:
            self.ha.on_birth(msg.payload, self.registry.list())
            self.mqtt.ack(msg)
            return
        delay_s = STORAGE_RETRY_MIN_S
        while True:
            try:
                admitted = self.bridge.admit(msg.topic, msg.payload)
                break
            except (sqlite3.Error, OSError) as exc:
                # The disk failed: retry this same message (later ones wait behind it, so sequence order
                # holds) and never acknowledge it unstored; stopped meanwhile, the broker redelivers it.
                self.storage_ok = False
                self.metrics.rejections.labels("storage").inc()
                log.error("could not store a message from %s (%s); retrying in %.1f s", msg.topic, exc, delay_s)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay_s)
                    return  # stopping: leave it unacknowledged
                except TimeoutError:
                    delay_s = min(STORAGE_RETRY_MAX_S, delay_s * 2)
            except Exception:  # our bug on odd input: drop it (acked) rather than have it redelivered for ever
                log.exception("internal error on a message from %s; dropped", msg.topic)
                self.metrics.rejections.labels("internal").inc()
                self.mqtt.ack(msg)
                return
        self.storage_ok = True
        self.mqtt.ack(msg)
        if admitted.needs_answer:
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._answer(admitted, msg.received_s))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _answer(self, admitted: Any, received_s: float) -> None:
        try:
            await self.bridge.answer_fp(admitted, received_s)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("fp answer skipped, swarm stopped: %s", exc)
            else:
                log.exception("answering an fp failed")
        finally:
            self._slots.release()

    async def _housekeep(self) -> None:
        last_prune = 0.0
        while True:
            try:
                status = self.swarm.status()
                self.metrics.swarm_peers.set(status.get("peers", 0) or 0)
                self.metrics.mqtt_connected.set(1 if self.mqtt.connected else 0)
                self.metrics.queue_depth.set(self.state.pending())
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    self.state.prune(time.time(), self.config.get("outbox", "reading_ttl_s"))
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(2.0)

    async def stop(self) -> None:
        self._stop.set()
        if self._answers:
            await asyncio.wait(set(self._answers), timeout=10.0)
        self._housekeeping.cancel()
        await self.flusher.stop()
        await self.mqtt.stop()
        await self.swarm.stop(graceful=True)
        if self.http is not None:
            await self.http.stop()
        self.state.close()
        self.registry.close()
        log.info("gateway stopped")

    def health(self) -> tuple[bool, dict[str, Any]]:
        swarm_running = bool(self.swarm.status().get("running", True))
        ok = self.mqtt.connected and swarm_running and self.storage_ok
        return ok, {"ok": ok, "mqtt_connected": self.mqtt.connected, "swarm_running": swarm_running,
                    "storage_ok": self.storage_ok,
                    "uptime_s": round(time.time() - self.started_s, 1)}

    def status(self) -> dict[str, Any]:
        swarm = self.swarm.status()
        return {"mqtt": {"connected": self.mqtt.connected, "host": self.config.get("mqtt", "host"),
                         "port": self.config.get("mqtt", "port"), "connects": self.mqtt.connects},
                "swarm": swarm, "peers": swarm.get("peers"), "stored_packets": swarm.get("stored_values"),
                "queue_depth": self.state.pending(), "outcomes_stored": self.state.stored(),
                "devices": len(self.registry.list()), "uptime_s": round(time.time() - self.started_s, 1),
                "verified_cache": {"entries": len(self.cache), "max_entries": self.cache.max_entries,
                                   "hits": self.cache.hits, "misses": self.cache.misses}}


async def _run(config: GatewayConfig) -> int:
    gateway = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    memtrace.install(loop)  # only with QIS_MEMTRACE_DIR set (soak investigations)
    await gateway.start()
    try:
        await gateway.serve()
    finally:
        await gateway.stop()
    return 0


def setup_logging(config: GatewayConfig) -> None:
    level = getattr(logging, config.get("log", "level"))
    root = logging.getLogger()
    root.setLevel(level)
    if config.get("log", "json"):
        class _Json(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps({"t": round(record.created, 3), "level": record.levelname,
                                   "logger": record.name, "msg": record.getMessage()})
        for handler in root.handlers:
            handler.setFormatter(_Json())


def run_service(config: GatewayConfig) -> int:
    setup_logging(config)
    return asyncio.run(_run(config))


# -- CLI helpers -------------------------------------------------------------------------------------------
def lookup_main(args: Any) -> int:
    try:
        address = bytes.fromhex(args.address)
    except ValueError:
        address = b""
    if len(address) != 32:
        print("qis-gateway lookup: ADDRESS must be 64 hex characters")
        return 2
    try:
        boot = [parse_hostport(b, "--bootstrap") for b in args.bootstrap]
    except ValueError as exc:
        print("qis-gateway lookup: %s" % exc)
        return 2
    if not boot:
        print("qis-gateway lookup: give at least one --bootstrap HOST:PORT")
        return 2
    return asyncio.run(_lookup(address, boot, args.limit, args.timeout))


async def _lookup(address: bytes, boot: list[tuple[str, int]], limit: int, timeout_s: float) -> int:
    from qis_gateway.packets import PacketError, verify

    host = "127.0.0.1" if all(h in ("127.0.0.1", "localhost") for h, _ in boot) else "0.0.0.0"
    with tempfile.TemporaryDirectory(prefix="qis-lookup-") as tmp:
        swarm = make_udp_swarm((host, 0), Path(tmp), boot, None)
        await swarm.start()
        try:
            result = await asyncio.wait_for(swarm.get(address, limit), timeout_s)
        except Exception as exc:
            print("lookup failed: %s" % exc)
            return 1
        finally:
            await swarm.stop(graceful=False)
    print("address %s: %d value(s), %d hop(s), %d message(s), %.1f ms" % (
        address.hex(), len(result.values), result.hops, result.messages, result.elapsed_ms))
    for value in result.values:
        try:
            p = verify(value, None, address)
        except PacketError as exc:
            print("  INVALID (%s)" % exc.reason)
            continue
        print("  %s label=%s value=%s weight=%.2f created=%s signer=%s" % (
            p.packet_id.hex()[:12], p.label, p.value, p.weight,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.created_s)), p.origin_key.hex()[:16]))
    return 0


def status_main(args: Any) -> int:
    from qis_gateway.cli import _load_config

    config = _load_config(args.config)
    listen = config.get("metrics", "listen")
    data: dict[str, Any] | None = None
    if listen:
        host, port = parse_hostport(listen, "metrics.listen")
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        try:
            with urllib.request.urlopen("http://%s:%d/status" % (host, port), timeout=5) as resp:
                data = json.loads(resp.read())
        except OSError as exc:
            log.debug("status endpoint unreachable: %s", exc)
    if data is None:
        state = StateDB(config.state_path)
        data = {"running": False, "queue_depth": state.pending(), "outcomes_stored": state.stored()}
        state.close()
    if args.json:
        print(json.dumps(data))
    elif data.get("running") is False:
        print("gateway not running (no answer on %s); queue depth %d, outcomes stored %d" % (
            listen or "metrics endpoint off", data["queue_depth"], data["outcomes_stored"]))
    else:
        print("mqtt: %s (%s:%s)" % ("connected" if data["mqtt"]["connected"] else "DISCONNECTED",
                                    data["mqtt"]["host"], data["mqtt"]["port"]))
        print("swarm: node %s, %s peer(s), %s stored packet(s)" % (
            str(data["swarm"].get("node_id", ""))[:16], data["peers"], data["stored_packets"]))
        print("outbox: %d queued, %d stored; devices %d; up %.0f s" % (
            data["queue_depth"], data["outcomes_stored"], data["devices"], data["uptime_s"]))
    return 0 if data.get("running") is not False else 1
