"""Simulator benchmark: lookup hops / messages / success at N = 1k, 10k, 100k nodes (tables built by
joining), plus 30% crash-after-store and 10% message loss at the largest N, and the same workload on
ideally pre-filled tables (the baseline, measured in the same run). Writes bench/results/sim.json.

    .venv/bin/python bench/bench_sim.py [--sizes 1000,10000,100000] [--lookups 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway"))

from qis_gateway.swarm.sim import run_simulation  # noqa: E402

log = logging.getLogger("bench_sim")


def _run(kwargs: dict) -> dict:
    # each scenario in a fresh process, so max_rss_mb is that scenario's own peak
    return run_simulation(**kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim.json"))
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(x) for x in args.sizes.split(",")]
    scenarios = []
    for n in sizes:
        scenarios.append(("join_n%d" % n, dict(nodes=n, lookups=args.lookups, seed=args.seed)))
        if not args.skip_baseline:
            scenarios.append(("ideal_n%d" % n, dict(nodes=n, lookups=args.lookups, seed=args.seed, tables="ideal")))
    big = max(sizes)
    scenarios.append(("kill30_n%d" % big, dict(nodes=big, lookups=args.lookups, seed=args.seed, kill_after_store=0.3)))
    scenarios.append(("loss10_n%d" % big, dict(nodes=big, lookups=args.lookups, seed=args.seed, loss=0.1)))
    results: dict[str, dict] = {}
    ctx = multiprocessing.get_context("spawn")
    for name, kwargs in scenarios:
        log.info("running %s %s", name, kwargs)
        with ctx.Pool(1) as pool:
            res = pool.apply(_run, (kwargs,))
        results[name] = res
        log.info("%s: success %.4f hops %s messages %s %.1f s %.0f MB", name, res["success_rate"], res["hops"],
                 res["messages"], res["seconds"], res["max_rss_mb"])
        Path(args.out).write_text(json.dumps({"scenarios": results}, indent=1))
    table = [
        {"nodes": results["join_n%d" % n]["nodes"], "hops_p50": results["join_n%d" % n]["hops"]["p50"],
         "hops_p99": results["join_n%d" % n]["hops"]["p99"], "messages_p50": results["join_n%d" % n]["messages"]["p50"],
         "success_rate": results["join_n%d" % n]["success_rate"], "seconds": results["join_n%d" % n]["seconds"],
         "max_rss_mb": results["join_n%d" % n]["max_rss_mb"],
         "ideal_hops_p50": results.get("ideal_n%d" % n, {}).get("hops", {}).get("p50"),
         "ideal_hops_p99": results.get("ideal_n%d" % n, {}).get("hops", {}).get("p99")}
        for n in sizes
    ]
    Path(args.out).write_text(json.dumps({"hop_table": table, "scenarios": results}, indent=1))
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
