"""The gateway process: wires config, registry, state, swarm, MQTT, bridge, flusher and metrics together.

How it works: `Gateway.start()` opens the SQLite files, loads (or creates) the signing key and the
schemas, starts the swarm node (its validator verifies packets through the shared cache), the metrics
endpoint, the outbox flusher and the MQTT client. `Gateway.serve()` reads board messages in arrival
order, in batches of whatever is waiting: `Intake.handle` (intake.py) admits a batch under one group
commit and PUBACKs its messages only then (a disk error retries the same batch with backoff, holding the
later ones behind it), and an admitted fp waits in `AnswerQueue` (answers.py) for one of 64 answer
workers (lookup + summary); one that waited more than a second is shed with a signed "busy" error frame,
and under sustained overload new fps are told "busy" on arrival (answers.py).
SIGTERM/SIGINT set a stop flag: the reader stops, queued answers finish (bounded), the flusher finishes
its puts in flight, paho gets its queued publishes out, the swarm node leaves gracefully, then the files
close. Nothing unacknowledged is lost: the broker keeps it in the persistent session.

`run_service(config)` is `qis-gateway run` (`serve_until_stopped(config)` the same inside a running
event loop). This module is the composition root only: the CLI (cli.py, commands.py) calls it, never
the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from qis.schema import Schema, load_schema
from qis.topics import subscription, topic

from qis_gateway.answers import AnswerQueue
from qis_gateway.backend import Swarm, is_unavailable, make_swarm, values_per_signer
from qis_gateway.bridge import Bridge
from qis_gateway.busy import busy_frame
from qis_gateway.config import ConfigError, GatewayConfig
from qis_gateway.evidence import Evidence
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.health import PeerWatch, assess
from qis_gateway.homeassistant import HomeAssistant
from qis_gateway.intake import BATCH_MAX, Intake
from qis_gateway.metrics import HttpEndpoint, Metrics
from qis_gateway.mqtt_client import Incoming, MqttClient
from qis_gateway.outbox import StateDB
from qis_gateway.packet_cache import VerifiedPacketCache, make_validator
from qis_gateway.registry import Registry
from qis_gateway.swarm import SwarmError
from qis_gateway.swarm.store_sqlite import StoreError

# Verified packets kept so each is verified once (LRU). Every swarm node verifies every packet stored at it,
# so the cache fills with the swarm's newest packets: in the HIL soak (24,000 packets in 10 minutes) it was
# the site gateways' RSS growth (50 -> 76-78 MB with 20,000 entries of ~840 bytes). An entry is ~405 bytes
# since cached packets share their repeated fields; 10,000 entries (~4 MB, ~5 MB resident) measured the
# same hit ratio as 20,000 under the soak's workload (75% vs 73%, bench/bench_gateway_mem.py). Version 2
# packets (16-byte nonce) add ~23 bytes an entry (tracemalloc over 5,000 entries: 452 against 429 bytes).
VERIFIED_CACHE_ENTRIES = 10_000

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
GIL_SWITCH_S = 0.0005


class StartupError(Exception):
    """The gateway cannot start (a bad file, a port in use); the message names what and where, in one line."""


# What a bad file, a full disk or a taken port raises while the gateway opens its parts (KeyFileError,
# IdentityError, SchemaError, RegistryError are ValueErrors); anything else is our bug and keeps its traceback.
_STARTUP_FAULTS = (OSError, sqlite3.Error, ValueError)


@contextlib.contextmanager
def _step(what: str, path: Path | None = None, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a start-up fault of one part (or one of `also`) into a StartupError that says which part (and
    its file, unless the error's own text names it already)."""
    try:
        yield
    except StartupError:
        raise
    except (*_STARTUP_FAULTS, *also) as exc:
        text = _one_line(exc)
        where = what if path is None or str(path) in text else "%s %s" % (what, path)
        raise StartupError("%s: %s" % (where, text)) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        text += " (the file is damaged or not an SQLite file: move it away to start afresh)"
    return " ".join(text.split())


def load_schemas(extra: list[str], base: Path) -> dict[str, Schema]:
    """The packaged schemas plus the configured files, by schema id."""
    out: dict[str, Schema] = {}
    for entry in sorted(resources.files("qis").joinpath("schemas").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            schema = Schema(json.loads(entry.read_text()))
            out[schema.schema_id] = schema
    for name in extra:
        path = Path(name) if Path(name).is_absolute() else base / name
        with _step("gateway.schemas", path):
            schema = load_schema(str(path))
        out[schema.schema_id] = schema
    return out


class Gateway:
    def __init__(self, config: GatewayConfig, swarm: Swarm | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self._swarm_override = swarm
        self._stop = asyncio.Event()
        self.answers = AnswerQueue(self._answer, self._shed)
        self.http: HttpEndpoint | None = None
        self.ha: HomeAssistant | None = None
        self.started_s = time.time()
        self.peer_watch = PeerWatch()
        self.intake: Intake | None = None
        self._swarm_started = False

    async def start(self) -> None:
        """Open every part; a start-up fault closes what was opened and raises StartupError (one line)."""
        try:
            await self._start()
        except BaseException:
            await self._abort_start()
            raise

    async def _start(self) -> None:
        from qis_gateway.keys import generate_key_file, load_signing_key, public_key_bytes

        c = self.config
        with _step("data directory", c.data_dir):
            c.data_dir.mkdir(parents=True, exist_ok=True)
        # The registry first: it refuses root on the service user's files before anything is written here.
        with _step("device registry", c.registry_path):
            self.registry = Registry(c.registry_path)
        key_path = c.key_path
        with _step("signing key", key_path):
            self.signing_key = load_signing_key(key_path) if key_path.exists() else generate_key_file(key_path)
        trusted = c.gateway.trusted_keys
        own_key = public_key_bytes(self.signing_key)
        if trusted is not None and own_key not in trusted:
            raise ConfigError("gateway.trusted_keys: this gateway's own key %s is not in the list, so every "
                              "outcome it signs would be refused, by its own node too: add it" % own_key.hex())
        with _step("gateway.schemas"):  # each file's errors name it (load_schemas)
            self.schemas = load_schemas(list(c.gateway.schemas), c.source.parent if c.source else Path.cwd())
        with _step("state database", c.state_path):
            self.state = StateDB(c.state_path)
        self.cache = VerifiedPacketCache(VERIFIED_CACHE_ENTRIES)
        if self._swarm_override is not None:
            self.swarm = self._swarm_override
        else:
            self.swarm = make_swarm(c.swarm, c.data_dir / "swarm", make_validator(self.cache, trusted))
        swarm_what = "swarm node (%s, UDP %s:%d)" % (c.data_dir / "swarm", *c.swarm.listen)
        with _step(swarm_what, also=(SwarmError, StoreError)):
            await self.swarm.start()
        self._swarm_started = True
        subs = [(subscription("fp"), 1), (subscription("outcome"), 1)]
        if c.homeassistant.enabled:
            self.ha = HomeAssistant(self._publish, c.homeassistant.prefix, c.mqtt.client_id)
            subs += [(self.ha.birth_topic, 1), (self.ha.config_filter, 1)]
        self.mqtt = MqttClient(c.mqtt, tuple(subs), on_connect=self._on_connect,
                               will=self.ha.will() if self.ha else None, on_drop=self.metrics.incoming_dropped.inc)
        evidence = Evidence(self.swarm, self.cache, self.metrics, c.synthesis, lookup_limit=c.swarm.lookup_limit,
                            trusted_keys=trusted, lookup_cache_s=c.swarm.lookup_cache_s,
                            values_per_signer=values_per_signer(self.swarm))
        self.bridge = Bridge(self.registry, self.state, self.schemas, self.signing_key, evidence, self._publish,
                             self.metrics, reject_log_interval_s=c.log.reject_interval_s,
                             on_summary=self.ha.on_summary if self.ha else None)
        if hasattr(self.swarm, "on_stored"):  # the Kademlia node (OpenDHT keeps its stores to itself)
            self.swarm.on_stored = evidence.heard
        self.flusher = OutboxFlusher(self.state, self.swarm, self.metrics, c.outbox, lookup_cache=evidence)
        self.bridge.outbox_wakeup = self.flusher.wake
        self.metrics.outcomes_held.set(self.state.held_count())
        self.bridge.sign_held()
        self.intake = Intake(self.bridge, self.registry, self.state, self.metrics, self.mqtt.ack,
                             self._start_answer, self._stop, self._other)
        if c.metrics.listen is not None:
            self.http = HttpEndpoint(self.metrics, self.health, self.status)
            with _step("metrics endpoint %s:%d" % c.metrics.listen):
                await self.http.start(*c.metrics.listen)
        self.flusher.start()
        self.answers.start()
        self.mqtt.start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep(), name="housekeeping")
        log.info("gateway started: %d schema(s), %d device(s), %d outcome packet(s) queued",
                 len(self.schemas), len(self.registry.list()), self.state.pending())

    async def _abort_start(self) -> None:
        """Close what a failed start opened (so the process exits cleanly, with no task left running)."""
        if self._swarm_started:
            with contextlib.suppress(Exception):
                await self.swarm.stop(graceful=False)
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.stop()
        for part in ("state", "registry"):
            opened = getattr(self, part, None)
            if opened is not None:
                with contextlib.suppress(Exception):
                    opened.close()

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.mqtt.publish(topic, payload, qos, retain)

    def _on_connect(self, session_present: bool) -> None:
        self.metrics.mqtt_connected.set(1)
        if self.ha is not None:
            self.ha.announce(self.registry.list())

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def storage_ok(self) -> bool:
        return self.intake is None or self.intake.storage_ok

    async def serve(self) -> None:
        """Handle board messages until request_stop()."""
        if self.intake is None:
            raise RuntimeError("start() was not called")
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                # Frames already waiting are taken at once: a task and asyncio.wait per batch cost ~30 us
                # (timeit), most of a batch's loop overhead under load. sleep(0) still lets the answer
                # workers run between batches, as the wait did (handle itself need not yield).
                batch = self.mqtt.take_nowait(BATCH_MAX)
                if batch:
                    await asyncio.sleep(0)
                else:
                    get = asyncio.ensure_future(self.mqtt.next_batch(BATCH_MAX))
                    await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        get.cancel()
                        break
                    batch = get.result()
                await self.intake.handle(batch)
        finally:
            stop_wait.cancel()

    def _other(self, msg: Incoming) -> bool:
        """Messages that are not board frames (Home Assistant's birth message)."""
        if self.ha is not None and msg.topic == self.ha.birth_topic:
            self.ha.on_birth(msg.payload, self.registry.list())
            return True
        if self.ha is not None and msg.topic.startswith(self.ha.prefix + "/"):
            self.ha.on_config(msg.topic, msg.payload, self.registry.list())
            return True
        return False

    async def _start_answer(self, admitted: Any, received_s: float) -> None:
        self.answers.submit(admitted, received_s)

    def _shed(self, admitted: Any, reason: str, why: str) -> None:
        """Overloaded: this fp gets a signed "busy" error frame instead of its summary (answers.py)."""
        record, body = admitted.device, admitted.body
        self.metrics.shed.labels(reason).inc()
        payload = busy_frame(record.device_id, body["seq"], why, record.secret)  # encode_error, ~4x cheaper
        self._publish(topic(record.site, record.device_id, "error"), payload, 1, False)

    async def _answer(self, admitted: Any, received_s: float) -> None:
        try:
            await self.bridge.answer_fp(admitted, received_s)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("fp answer skipped, swarm stopped: %s", exc)
            else:
                log.exception("answering an fp failed")

    async def _housekeep(self) -> None:
        last_prune = 0.0
        while True:
            try:
                status = self.swarm.status()
                self.metrics.swarm_peers.set(status.get("peers", 0) or 0)
                self.peer_watch.update(status.get("peers"))
                if self.ha is not None and self.mqtt.connected:
                    self.ha.sync(self.registry.list())  # boards added or revoked since: no restart needed
                self.metrics.mqtt_connected.set(1 if self.mqtt.connected else 0)
                self.metrics.queue_depth.set(self.state.pending())
                while self.bridge.sign_held():  # outcomes held while the clock was wrong, once it is right
                    await asyncio.sleep(0)
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    self.state.prune(time.time(), self.config.outbox.reading_ttl_s)
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(2.0)

    async def stop(self) -> None:
        self._stop.set()
        await self.answers.stop(10.0)
        self._housekeeping.cancel()
        if self.ha is not None and self.mqtt.connected:
            self.ha.offline()
        await self.flusher.stop()
        await self.mqtt.stop()
        await self.swarm.stop(graceful=True)
        if self.http is not None:
            await self.http.stop()
        self.state.close()
        self.registry.close()
        log.info("gateway stopped")

    def health(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = assess(self.mqtt.connected, self.swarm.status(), self.storage_ok, self.flusher.blocked)
        detail["uptime_s"] = round(time.time() - self.started_s, 1)
        return ok, detail

    def status(self) -> dict[str, Any]:
        swarm = self.swarm.status()
        _, health = assess(self.mqtt.connected, swarm, self.storage_ok, self.flusher.blocked)
        return {"health": health["status"], "problems": health["problems"],
                "mqtt": {"connected": self.mqtt.connected, "host": self.config.mqtt.host,
                         "port": self.config.mqtt.port, "connects": self.mqtt.connects},
                "swarm": swarm, "peers": swarm.get("peers"), "stored_packets": swarm.get("stored_values"),
                "queue_depth": self.state.pending(), "outcomes_stored": self.state.stored(),
                "outcomes_held": self.state.held_count(),
                "devices": len(self.registry.list()), "uptime_s": round(time.time() - self.started_s, 1),
                "verified_cache": {"entries": len(self.cache), "max_entries": self.cache.max_entries,
                                   "hits": self.cache.hits, "misses": self.cache.misses}}


async def serve_until_stopped(config: GatewayConfig) -> int:
    """Run a gateway in the running event loop until SIGTERM/SIGINT."""
    gateway = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    await gateway.start()
    try:
        await gateway.serve()
    finally:
        await gateway.stop()
    return 0


def setup_logging(config: GatewayConfig, log_level: int | None = None) -> None:
    """The config's `[log]` settings; `log_level` (from -v/-q/--log-level) wins over its level."""
    level = getattr(logging, config.log.level) if log_level is None else log_level
    root = logging.getLogger()
    root.setLevel(level)
    if config.log.json:
        class _Json(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps({"t": round(record.created, 3), "level": record.levelname,
                                   "logger": record.name, "msg": record.getMessage()})
        for handler in root.handlers:
            handler.setFormatter(_Json())


def run_service(config: GatewayConfig, log_level: int | None = None) -> int:
    setup_logging(config, log_level)
    # paho's network thread gives up the GIL on every recv (several per MQTT packet) and then waits for
    # the busy event loop to hand it back: up to the switch interval (5 ms by default) each time, so
    # under load it fetched ~100 frames/s and the rest waited at the broker, unseen by the shedding.
    sys.setswitchinterval(GIL_SWITCH_S)
    return asyncio.run(serve_until_stopped(config))
