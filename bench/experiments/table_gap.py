"""Experiment: where do join-built routing tables lose hops against the ideal ones? (issue 4)

How it works: builds a swarm by joins in the simulator (seed 1), then optionally rebuilds part of every
node's table from global knowledge, as ``Simulator.prefill_ideal`` does (``--tables ideal``: every bucket;
``ideal-full``: only the buckets that are full; ``ideal-partial``: only the others), then runs the
benchmark's workload on that same swarm (1,000 addresses x 3 values put from random nodes, then
``--gets`` gets) and prints the hop histogram. It also prints the in-degree of the nodes (in how many
full buckets each one appears), by join order.

    .venv/bin/python bench/experiments/table_gap.py --nodes 5000 --tables joined --gets 4000
"""

from __future__ import annotations

import argparse
import bisect
import collections
import gc
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gateway"))

from qis_gateway.swarm.sim import Simulator, _summary, config_with  # noqa: E402


def rebuild(sim: Simulator, which: str, k: int) -> None:
    ids = sorted((x.table.own_int, x) for x in sim.nodes)
    keys = [i for i, _ in ids]
    rng = random.Random(9)
    for node in sim.nodes:
        table = node.table
        own = table.own_int
        for b in list(table.buckets):
            full = len(table.buckets[b]) >= k
            if which == "ideal" or (which == "ideal-full" and full) or (which == "ideal-partial" and not full):
                lo = ((own >> b) ^ 1) << b
                first, end = bisect.bisect_left(keys, lo), bisect.bisect_left(keys, lo + (1 << b))
                picks = range(first, end) if end - first <= k else rng.sample(range(first, end), k)
                new = [sim.intern[ids[j][1].node_id] for j in picks]
                table._size += len(new) - len(table.buckets[b])
                table.buckets[b] = new


def in_degree(sim: Simulator, k: int) -> dict[str, float]:
    deg: collections.Counter[bytes] = collections.Counter()
    for node in sim.nodes:
        for bucket in node.table.buckets.values():
            if len(bucket) >= k:
                deg.update(c.node_id for c in bucket)
    d = [deg[x.node_id] for x in sim.nodes]
    n = len(d)
    s = sorted(d)
    out = {"p50": s[n // 2], "p99": s[99 * n // 100], "max": s[-1]}
    for name, lo, hi in (("first_5pct", 0, n // 20), ("middle_5pct", n // 2, n // 2 + n // 20),
                         ("last_5pct", n - n // 20, n)):
        out["mean_" + name] = round(statistics.mean(d[lo:hi]), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--gets", type=int, default=4000)
    ap.add_argument("--tables", choices=("joined", "ideal", "ideal-full", "ideal-partial"), default="joined")
    args = ap.parse_args()
    cfg = config_with(join_refresh_buckets=256)
    sim = Simulator(seed=1, config=cfg)
    gc.disable()
    sim.join_all(args.nodes)
    if args.tables != "joined":
        rebuild(sim, args.tables, cfg.k)
    degree = in_degree(sim, cfg.k)
    gc.enable()
    rng = random.Random(1 ^ 0x5EED)
    expected: dict[bytes, set[bytes]] = {}
    puts = []
    for _ in range(1000):
        address = rng.getrandbits(256).to_bytes(32, "big")
        expected[address] = set()
        for _ in range(3):
            value = rng.getrandbits(2400).to_bytes(300, "big")
            expected[address].add(value)
            o = sim.nodes[rng.randrange(len(sim.nodes))]
            puts.append(lambda now, o=o, a=address, v=value: (o, o.start_put(a, v, now)))
    sim.run_ops(puts)
    addresses = list(expected)
    gets = []
    for _ in range(args.gets):
        o = sim.nodes[rng.randrange(len(sim.nodes))]
        a = addresses[rng.randrange(len(addresses))]
        gets.append(lambda now, o=o, a=a: (o, o.start_get(a, 1000, now)))
    summary = _summary(sim.run_ops(gets), expected)
    print(json.dumps({"nodes": args.nodes, "tables": args.tables, "success_rate": summary["success_rate"],
                      "hops": summary["hops"], "in_degree_full_buckets": degree}))


if __name__ == "__main__":
    main()
