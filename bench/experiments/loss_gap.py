"""Why gets under message loss miss values: a diagnostic for issue 18 point 14 (not part of the package).

Builds a joined swarm (lossless), puts ``values_per_address`` values per address and runs the gets with
``--loss`` (as ``qis-swarm simulate --loss`` does: puts and gets both lossy), then classifies every
failed get:
- ``stored_nowhere_close``: a missing value is held by fewer than 2 of the k closest live nodes (the put
  lost it);
- ``holders_agree_partial``: the get ended on its quorum of complete holders that all lacked the value;
- ``other``: anything else (the lookup gave up, a page lost, ...).
It also prints how many of the k closest nodes hold each value (the put's coverage under loss).

    .venv/bin/python bench/experiments/loss_gap.py --nodes 2000 --lookups 1000 --loss 0.1 --seed 1
"""

from __future__ import annotations

import argparse
import gc
import json
import random
from collections import Counter

from qis_gateway.swarm.sim import SIM_CONFIG, Simulator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--values-per-address", type=int, default=3)
    args = ap.parse_args()
    gc.disable()
    sim = Simulator(args.seed, SIM_CONFIG, loss=0.0)
    sim.join_all(args.nodes)
    gc.freeze()
    gc.enable()
    rng = random.Random(args.seed ^ 0x5EED)
    expected: dict[bytes, set[bytes]] = {}
    puts = []
    for _ in range(min(args.lookups, 1000)):
        address = rng.getrandbits(256).to_bytes(32, "big")
        expected[address] = set()
        for _ in range(args.values_per_address):
            value = rng.getrandbits(300 * 8).to_bytes(300, "big")
            expected[address].add(value)
            origin = sim.nodes[rng.randrange(len(sim.nodes))]
            puts.append(lambda now, o=origin, a=address, v=value: (o, o.start_put(a, v, now)))
    sim.loss = args.loss
    sim.run_ops(puts)
    addresses = list(expected)
    live = [n for n in sim.nodes if sim.alive(n)]
    batch = []
    for _ in range(args.lookups):
        node = live[rng.randrange(len(live))]
        address = addresses[rng.randrange(len(addresses))]
        batch.append(lambda now, o=node, a=address: (o, o.start_get(a, 1000, now)))
    gets = sim.run_ops(batch)
    k = SIM_CONFIG.k
    by_dist = sorted(live, key=lambda n: n.table.own_int)
    coverage: Counter[int] = Counter()
    for address, vals in expected.items():
        t = int.from_bytes(address, "big")
        closest = sorted(by_dist, key=lambda n: n.table.own_int ^ t)[:k]
        for v in vals:
            coverage[sum(1 for n in closest if v in set(n.store.values(address, 1000)))] += 1
    kinds: Counter[str] = Counter()
    fails = 0
    for ev in gets:
        missing = expected[ev.address] - set(ev.values)
        if ev.ok and not missing:
            continue
        fails += 1
        t = int.from_bytes(ev.address, "big")
        closest = sorted(by_dist, key=lambda n: n.table.own_int ^ t)[:k]
        held = min(sum(1 for n in closest if v in set(n.store.values(ev.address, 1000))) for v in missing)
        if not ev.ok:
            kinds["not_ok"] += 1
        elif held < 2:
            kinds["stored_nowhere_close"] += 1
        else:
            kinds["partial (missing value held by %d of the %d closest)" % (held, k)] += 1
    print(json.dumps({"nodes": args.nodes, "loss": args.loss, "seed": args.seed, "lookups": len(gets),
                      "success": 1 - fails / len(gets), "failures": dict(kinds),
                      "copies_among_k_closest": dict(sorted(coverage.items())),
                      "messages_p50": sorted(ev.messages for ev in gets)[len(gets) // 2]}, indent=1))


if __name__ == "__main__":
    main()
