"""Simulator benchmark: lookup hops / messages / success at N = 1k, 10k, 100k nodes with routing tables
built by joining, then (at the largest N, on the same swarm) 10% message loss and 30% of the nodes
crash-stopped after storing (no repair). Baseline measured in the same run: the same workload on ideally
pre-filled tables (k random nodes from every bucket range, no messages). Writes bench/results/sim.json.

    .venv/bin/python bench/bench_sim.py [--sizes 1000,10000,100000] [--lookups 1000] [--seed 1]
                                        [--join-refresh 4]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway"))

from qis_gateway.swarm.sim import config_with, run_simulation  # noqa: E402

log = logging.getLogger("bench_sim")


def _run(kwargs: dict) -> dict:
    refresh = kwargs.pop("join_refresh")
    return run_simulation(config=config_with(join_refresh_buckets=refresh), **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--join-refresh", type=int, default=256,
                    help="buckets refreshed at join beyond the self-lookup (SwarmConfig.join_refresh_buckets)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim.json"))
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(x) for x in args.sizes.split(",")]
    big = max(sizes)
    scenarios = []
    for n in sizes:
        phases = (("loss", 0.1), ("kill", 0.3)) if n == big else ()
        scenarios.append(("join_n%d" % n, dict(nodes=n, lookups=args.lookups, seed=args.seed, phases=phases,
                                                join_refresh=args.join_refresh)))
        if not args.skip_baseline:
            scenarios.append(("ideal_n%d" % n, dict(nodes=n, lookups=args.lookups, seed=args.seed, tables="ideal",
                                                     join_refresh=args.join_refresh)))
    doc: dict = {
        "command": " ".join(["bench/bench_sim.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": {},
    }
    ctx = multiprocessing.get_context("spawn")
    for name, kwargs in scenarios:
        log.info("running %s", name)
        with ctx.Pool(1) as pool:  # a fresh process per scenario: max_rss_mb is that scenario's own peak
            res = pool.apply(_run, (dict(kwargs),))
        doc["scenarios"][name] = res
        log.info("%s: success %.4f hops %s messages %s %.1f s %.0f MB", name, res["success_rate"],
                 {k: v for k, v in res["hops"].items() if k != "histogram"}, res["messages"], res["seconds"],
                 res["max_rss_mb"])
        Path(args.out).write_text(json.dumps(doc, indent=1))
    rows = []
    for n in sizes:
        j = doc["scenarios"]["join_n%d" % n]
        ideal = doc["scenarios"].get("ideal_n%d" % n)
        rows.append({"nodes": n, "success_rate": j["success_rate"], "hops_p50": j["hops"]["p50"],
                     "hops_p99": j["hops"]["p99"], "messages_p50": j["messages"]["p50"],
                     "messages_p99": j["messages"]["p99"], "table_mean": j["table_size"]["mean"],
                     "join_messages_per_node": j["join_messages_per_node"], "seconds": j["seconds"],
                     "max_rss_mb": j["max_rss_mb"], "wall_us_per_delivered": j.get("wall_us_per_delivered"),
                     "ideal_hops_p50": ideal["hops"]["p50"] if ideal else None,
                     "ideal_hops_p99": ideal["hops"]["p99"] if ideal else None,
                     "ideal_table_mean": ideal["table_size"]["mean"] if ideal else None})
    doc["hop_table"] = rows
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
