"""In-process replay: the gateway's own `Bridge` (admission, lookup, per-signer cap, level fallback,
synthesis) over an in-memory swarm, without MQTT, UDP or board processes. For fast tuning sweeps and for
the site-local baseline; the reported QIS figures come from the real path (replay.py).

How it works: one Bridge per site (its own registry, state DB, signing key and board), as `qis-gateway
run` builds it. Rows are replayed in rounds: in round k every site with a k-th row publishes its fp
frame (HMAC-signed, as a board does), gets its summary from `Bridge.answer_fp`, then reports the row's
true outcome; the outcome packets wait in the site's outbox and are put into the swarm at the start of
the next round (the real gateways flush them in the background while the boards read on). `shared=True`
is QIS: all sites put into one swarm. `shared=False` is site-local: each site its own swarm. The swarm is
`MemorySwarm`: the Kademlia node's value store and storage policy (per-address cap, eviction) in one
process; `get` returns what an address holds, oldest first, up to the lookup limit, as a node does.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
from qis import messages
from qis.schema import Schema
from qis.topics import topic

from qis_gateway.bridge import Bridge
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import BoardSummary, Evidence
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.registry import Registry
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.node import COUNTER_NAMES
from qis_gateway.swarm.core.storage_policy import StoragePolicy
from qis_gateway.swarm.core.store import MemoryValueStore
from qis_gateway.usefulness.data import Row

ROUND_S = 0.25  # simulated seconds per round (the clock the bridges see)
LOOKUP_LIMIT = 256  # = a holder's per-address cap: a lookup sees all an address holds


def summary_body(summary: BoardSummary) -> dict[str, Any]:
    """The summary as the board's frame carries it (what the real path's judge reads)."""
    return {"enough": summary.enough, "n": summary.n, "top": [list(t) for t in summary.top], "conf": summary.conf,
            "mean": summary.mean, "level": summary.level}


@dataclass(frozen=True, slots=True)
class _Lookup:
    values: tuple[bytes, ...]
    hops: int = 0
    messages: int = 0
    elapsed_ms: float = 0.0


class MemorySwarm:
    """The `Swarm` protocol over one in-memory value store with the Kademlia node's storage policy.
    `seen` keeps every (address, value) put, so a test can check what would cross the swarm."""

    def __init__(self, config: SwarmConfig | None = None, clock: Callable[[], float] = lambda: 0.0,
                 keep_seen: bool = False) -> None:
        self.config = config or SwarmConfig()
        self.store = MemoryValueStore()
        self.storage = StoragePolicy(self.config)  # as a node holds values (no signer_of: no per-signer quota)
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.clock = clock
        self.seen: list[tuple[bytes, bytes]] | None = [] if keep_seen else None

    async def start(self) -> None:
        return None

    async def stop(self, graceful: bool = True) -> None:
        return None

    async def put(self, address: bytes, value: bytes) -> int:
        if self.seen is not None:
            self.seen.append((address, value))
        self.storage.store(self.store, address, value, self.clock(), self.counters, None)
        return 1

    async def get(self, address: bytes, limit: int = 200) -> _Lookup:
        return _Lookup(tuple(self.store.values(address, limit)))

    def status(self) -> dict[str, Any]:
        return {"peers": 0, "values": self.store.total()}


@dataclass
class Prediction:
    row: Row
    site: int
    summary: dict[str, Any]


class _Site:
    def __init__(self, index: int, workdir: Path, swarm: MemorySwarm, schema: Schema, settings: SynthesisSettings,
                 clock: Callable[[], float], cache: VerifiedPacketCache) -> None:
        self.index = index
        self.name = "site-%d" % index
        self.registry = Registry(workdir / ("registry-%d.sqlite" % index))
        self.state = StateDB(workdir / ("state-%d.sqlite" % index))
        self.device = self.registry.add("board-%d" % index, self.name)
        self.swarm = swarm
        self.schema = schema
        self.seq = 0
        metrics = Metrics()
        evidence = Evidence(swarm, cache, metrics, settings, lookup_limit=LOOKUP_LIMIT, clock=clock)
        self.bridge = Bridge(self.registry, self.state, {schema.schema_id: schema},
                             nacl.signing.SigningKey.generate(), evidence, lambda *a: None, metrics, clock=clock)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def predict(self, row: Row) -> tuple[int, dict[str, Any]]:
        seq = self._next_seq()
        frame = messages.encode_fp(self.device.device_id, seq, self.schema.fingerprint(row.reading),
                                   self.device.secret)
        admitted = self.bridge.admit(topic(self.name, self.device.device_id, "fp"), frame)
        if admitted.outcome != "accepted":
            raise RuntimeError("fp refused: %s" % admitted.reason)
        return seq, summary_body(await self.bridge.answer_fp(admitted))

    def report(self, reading_seq: int, label: str) -> None:
        frame = messages.encode_outcome(self.device.device_id, self._next_seq(), reading_seq, label,
                                        self.device.secret)
        admitted = self.bridge.admit(topic(self.name, self.device.device_id, "outcome"), frame)
        if admitted.outcome != "accepted":
            raise RuntimeError("outcome refused: %s" % admitted.reason)

    async def flush(self, now_s: float) -> int:
        done = 0
        while True:
            items = self.state.due(now_s, limit=256)
            if not items:
                return done
            for item in items:
                await self.swarm.put(item.address, item.packet)
                self.state.mark_done(item.id, now_s)
                done += 1

    def close(self) -> None:
        self.registry.close()
        self.state.close()


async def _replay(sites_rows: list[list[Row]], schema: Schema, settings: SynthesisSettings, shared: bool,
                  workdir: Path, keep_seen: bool) -> tuple[list[Prediction], list[MemorySwarm]]:
    now = [1_800_000_000.0]  # a fixed, plausible wall clock (the gateway refuses to sign before 2026)

    def clock() -> float:
        return now[0]

    swarms = [MemorySwarm(clock=clock, keep_seen=keep_seen)]
    if not shared:
        swarms += [MemorySwarm(clock=clock, keep_seen=keep_seen) for _ in sites_rows[1:]]
    cache = VerifiedPacketCache(1_000_000)  # shared: a signature checks out once (a speed-up, same results)
    sites = [_Site(i, workdir, swarms[0] if shared else swarms[i], schema, settings, clock, cache)
             for i in range(len(sites_rows))]
    out: list[Prediction] = []
    try:
        for k in range(max(len(rows) for rows in sites_rows)):
            for site in sites:
                await site.flush(now[0])
            active = [(site, sites_rows[site.index][k]) for site in sites if k < len(sites_rows[site.index])]
            for site, row in active:
                seq, summary = await site.predict(row)
                out.append(Prediction(row, site.index, summary))
                site.report(seq, row.label)
            now[0] += ROUND_S
    finally:
        for site in sites:
            site.close()
    return out, swarms


def replay_in_process(sites_rows: list[list[Row]], schema: Schema, settings: SynthesisSettings, *,
                      shared: bool = True, keep_seen: bool = False) -> tuple[list[Prediction], list[MemorySwarm]]:
    """Every row's prediction (taken before its outcome is reported), and the swarm(s) used."""
    with tempfile.TemporaryDirectory(prefix="qis-usefulness-", dir=_fast_tmp()) as tmp:
        return asyncio.run(_replay(sites_rows, schema, settings, shared, Path(tmp), keep_seen))


def _fast_tmp() -> str | None:
    """A RAM-backed temporary directory where there is one (the state DBs commit per frame)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
