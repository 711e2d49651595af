"""Issue 18 point 4, "fewer requests per reading": what one reading costs in swarm datagrams through the
gateway's own path (``Evidence.summarise``: level fallback, the 1 s per-address lookup cache, in-flight
coalescing) against a 4-node swarm on loopback, at 500 readings/s spread over all 256 exact addresses.

A lookup of an address nobody holds must hear every one of its k closest nodes (Kademlia FIND_VALUE), and
in a swarm of at most k + 1 nodes that is one request per peer: the floor per uncached lookup. Level
addresses are independent hashes (qis.fingerprint.keyspace_address), so one level's node lookup cannot
serve another's. Bounded here: at most one request per peer per lookup (plus a retry allowance of 0.5
for a loaded machine) and at most one lookup per reading (measured: 0.47)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from qis.schema import load_schema
from qis_gateway.backend import make_udp_swarm
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import Evidence
from qis_gateway.metrics import Metrics
from qis_gateway.packet_cache import VerifiedPacketCache, make_validator

from .burst_load import reading
from .conftest import run

SCHEMA = load_schema(str(Path(__file__).resolve().parents[2] / "shared" / "qis" / "schemas" / "machine_health.json"))
READINGS = 2000
RATE = 500.0


@pytest.mark.slow
@pytest.mark.adversarial
def test_datagrams_per_reading(tmp_path: Path) -> None:
    async def main() -> None:
        cache = VerifiedPacketCache(10_000)
        valid = make_validator(cache)
        peers = [make_udp_swarm(("127.0.0.1", 0), tmp_path / "p0", [], valid)]
        await peers[0].start()
        for i in (1, 2):
            p = make_udp_swarm(("127.0.0.1", 0), tmp_path / ("p%d" % i), [peers[0].address], valid)
            await p.start()
            peers.append(p)
        gw = make_udp_swarm(("127.0.0.2", 0), tmp_path / "gw", [peers[0].address], valid)
        await gw.start()
        try:
            await asyncio.sleep(1.0)
            n_peers = len(gw.node.routing_table)
            assert n_peers == 3
            evidence = Evidence(gw, cache, Metrics(), SynthesisSettings(min_n=3), lookup_limit=256,
                                lookup_cache_s=1.0)
            rng = random.Random(18)
            before = dict(gw.node.counters)
            t0 = time.perf_counter()
            tasks = []
            for i in range(READINGS):
                fp = SCHEMA.fingerprint(reading(rng))
                tasks.append(asyncio.ensure_future(evidence.summarise(fp.vector, SCHEMA.level_addresses(fp.fields))))
                await asyncio.sleep(max(0.0, t0 + (i + 1) / RATE - time.perf_counter()))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - t0
            c = gw.node.counters
            sent, received = c["sent"] - before["sent"], c["received"] - before["received"]
            lookups = evidence.lookups
            print("\n%d readings in %.1f s: %d lookups (%.2f per reading), %d cache hits; %d datagrams sent "
                  "(%.2f per reading, %.2f per lookup), %d received"
                  % (READINGS, elapsed, lookups, lookups / READINGS, evidence.cache_hits, sent, sent / READINGS,
                     sent / lookups, received))
            assert sent / lookups <= n_peers + 0.5
            assert lookups <= READINGS
        finally:
            for n in [gw, *peers]:
                await n.stop(graceful=False)

    run(main(), 120)
