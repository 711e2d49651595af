"""Test helpers for the gateway: an in-memory swarm, a simulated board, a bridge builder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qis import messages
from qis.schema import Schema
from qis.topics import topic
from qis_gateway.backend import LookupResult
from qis_gateway.bridge import Bridge
from qis_gateway.config import SynthesisSettings, default
from qis_gateway.evidence import Evidence
from qis_gateway.harness.broker import Broker
from qis_gateway.keys import generate_key_file
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.packet_cache import VerifiedPacketCache, make_validator
from qis_gateway.registry import Registry
from qis_gateway.service import load_schemas
from qis_gateway.swarm import SwarmUnavailable, SwarmUsageError

SCHEMAS = load_schemas([], Path("."))
MACHINE = SCHEMAS["machine-health/1"]


class MemorySwarm:
    """A swarm double: values in a dict shared by every instance made with the same dict. Applies the
    validator like a real node, and can be switched off (`available = False`) to simulate an outage."""

    def __init__(self, shared: dict[bytes, list[bytes]] | None = None, validator: Any = None) -> None:
        self.shared = {} if shared is None else shared
        self.validator = validator
        self.available = True
        self.running = False
        self.puts = 0
        self.attempts = 0
        self.gets = 0

    async def start(self) -> None:
        self.running = True

    async def stop(self, graceful: bool = True) -> None:
        self.running = False

    async def put(self, address: bytes, value: bytes) -> int:
        if not self.available:
            raise SwarmUnavailable("simulated outage")
        self.attempts += 1
        if self.validator is not None and not self.validator(address, value):
            raise SwarmUsageError("the validator rejected the value; nothing was stored")  # as UdpSwarm
        self.puts += 1
        held = self.shared.setdefault(address, [])
        if value not in held:
            held.append(value)
        return 3

    async def get(self, address: bytes, limit: int = 200) -> LookupResult:
        if not self.available:
            raise SwarmUnavailable("simulated outage")
        self.gets += 1
        return LookupResult(tuple(self.shared.get(address, [])[:limit]), 2, 3, 0.5, 0.2)

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "peers": 1, "stored_values": sum(len(v) for v in self.shared.values())}


@dataclass
class Board:
    """A simulated board: makes fp/outcome frames with its own secret and counter."""

    site: str
    device: str
    secret: bytes
    seq: int = 0
    fixed: dict[str, Any] = field(default_factory=lambda: {"machine_class": "pump"})

    def topic(self, kind: str) -> str:
        return topic(self.site, self.device, kind)

    def fp(self, temperature_c: float = 55.0, vibration: float = 2.0, load: float = 50.0,
           current: float = 10.0, schema: Schema = MACHINE) -> tuple[str, bytes, int]:
        reading = dict(self.fixed, temperature_c=temperature_c, vibration_mm_s=vibration, load_pct=load,
                       current_a=current)
        self.seq += 1
        frame = messages.encode_fp(self.device, self.seq, schema.fingerprint(reading), self.secret)
        return self.topic("fp"), frame, self.seq

    def outcome(self, reading_seq: int, label: str, value: float | None = None) -> tuple[str, bytes, int]:
        self.seq += 1
        frame = messages.encode_outcome(self.device, self.seq, reading_seq, label, self.secret, value=value)
        return self.topic("outcome"), frame, self.seq


class Published(list):
    """Collects (topic, payload, qos, retain) published by the bridge."""

    def __call__(self, topic_name: str, payload: bytes, qos: int, retain: bool) -> None:
        self.append((topic_name, payload, qos, retain))

    def bodies(self, board: Board, kind: str) -> list[dict[str, Any]]:
        return [messages.decode(p, board.secret, kind=kind) for t, p, _, _ in self if t == board.topic(kind)]


@dataclass
class Rig:
    bridge: Bridge
    registry: Registry
    state: StateDB
    swarm: MemorySwarm
    published: Published
    metrics: Metrics

    def board(self, device: str = "pump-01", site: str = "site-a") -> Board:
        record = self.registry.get(device) or self.registry.add(device, site)
        return Board(site, device, record.secret)

    def close(self) -> None:
        self.state.close()
        self.registry.close()


def make_rig(tmp: Path, shared: dict[bytes, list[bytes]] | None = None, name: str = "gw",
             settings: SynthesisSettings | None = None, lookup_limit: int = default("swarm", "lookup_limit"),
             trusted_keys: frozenset[bytes] | None = None, clock: Callable[[], float] = time.time) -> Rig:
    """A Bridge wired as the service wires it (its Evidence on the rig's swarm, cache and metrics), over an
    in-memory swarm. `settings` defaults to the configured ones with min_n = 1."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = generate_key_file(tmp / ("%s.key" % name))
    cache = VerifiedPacketCache(1000)
    swarm = MemorySwarm(shared, make_validator(cache, trusted_keys))
    registry = Registry(tmp / ("%s-registry.sqlite" % name))
    state = StateDB(tmp / ("%s-state.sqlite" % name))
    published = Published()
    metrics = Metrics()
    evidence = Evidence(swarm, cache, metrics, settings or SynthesisSettings(min_n=1), lookup_limit=lookup_limit,
                        trusted_keys=trusted_keys, clock=clock)
    bridge = Bridge(registry, state, SCHEMAS, key, evidence, published, metrics, reject_log_interval_s=60.0,
                    clock=clock)
    return Rig(bridge, registry, state, swarm, published, metrics)


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


class BoardClient:
    """A board on a real broker (paho, anonymous): publishes frames, collects its summaries and errors."""

    def __init__(self, board: Board, host: str, port: int, password: str | None = None) -> None:
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.board = board
        self.got: dict[str, list[dict[str, Any]]] = {"summary": [], "error": []}
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="board-%s" % board.device,
                                  clean_session=False)
        if password is not None:
            self.client.username_pw_set(board.device, password)

        def on_connect(client, userdata, flags, reason, props):  # noqa: ANN001
            client.subscribe([(board.topic("summary"), 1), (board.topic("error"), 1)])

        def on_subscribe(client, userdata, mid, reasons, props):  # noqa: ANN001
            self._ready.set()

        def on_message(client, userdata, msg):  # noqa: ANN001
            kind = msg.topic.rsplit("/", 1)[1]
            self.got[kind].append(messages.decode(msg.payload, board.secret, kind=kind))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("board could not subscribe")

    def send(self, item: tuple[str, bytes, int]) -> int:
        t, frame, seq = item
        self.client.publish(t, frame, qos=1).wait_for_publish(10)
        return seq

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def wait_for(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await asyncio.sleep(0.02)


class SecureBroker(Broker):
    """Mosquitto with the config `qis-gateway broker-config` generates for a registry (passwords, ACL,
    persistence), on a free loopback port; start/stop/kill/restart/pause/resume as the harness Broker."""

    def __init__(self, workdir: Path, registry_path: Path, gateway_password: str = "gw-pass") -> None:
        import os

        from qis_gateway.broker_config import generate
        from support.broker import free_port

        super().__init__(workdir, kind="mosquitto", port=free_port())
        self.gateway_password = gateway_password
        with Registry(registry_path) as reg:
            records = reg.list()
        self.files = generate(workdir, records, listen=("127.0.0.1", self.port), gateway_password=gateway_password,
                              run_as="root" if os.geteuid() == 0 else None)
        self.start()

    def _command(self) -> list[str]:
        from support.broker import mosquitto_path

        return [mosquitto_path() or "mosquitto", "-c", str(self.files.conf), "-v"]
