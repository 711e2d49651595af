"""Swarm on real UDP (127.0.0.1): ours vs OpenDHT vs PyPI kademlia, same workload, same process layout.

Scenarios (each implementation runs the identical workload, node counts per process, lookup sources and
crash set; see bench/bench_udp.py):
  healthy64  64 nodes in 4 processes, 100 addresses x 3 packets of 300 B, 300 sequential lookups
  crash32    32 nodes: 24 in 3 processes + 8 in a 4th that gets SIGKILL after the puts (25 %), then
             100 sequential lookups from random survivors at once (no repair time)
  scale256   256 nodes in 4 processes, 50 addresses x 3 packets, 300 lookups (where lookups take 2 rounds)
Goals checked (issue 4): healthy64 success 1.0 and our latency p50 <= OpenDHT's; crash32 success 1.0 and
our latency p99 <= 100 ms. Peers missing from the venv are reported, not faked (pip install '.[bench]').

    .venv/bin/python bench/bench_swarm.py [--quick] [--peers opendht,kademlia] [--out bench/results/swarm.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from bench_udp import run_comparison

HERE = Path(__file__).resolve().parent

SCENARIOS = {
    "healthy64": {"nodes": 64, "values": 100, "lookups": 300, "crash": 0.0, "procs": 4},
    "crash32": {"nodes": 32, "values": 50, "lookups": 100, "crash": 0.25, "procs": 4},
    "scale256": {"nodes": 256, "values": 50, "lookups": 300, "crash": 0.0, "procs": 4},
}
QUICK = {
    "healthy64": {"nodes": 64, "values": 30, "lookups": 100, "crash": 0.0, "procs": 4},
    "crash32": {"nodes": 32, "values": 20, "lookups": 40, "crash": 0.25, "procs": 4},
    "scale256": {"nodes": 256, "values": 20, "lookups": 100, "crash": 0.0, "procs": 4},
}


def _goal(results: dict, impl: str, path: tuple[str, ...]) -> float | None:
    doc = results.get(impl, {})
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload (same layout)")
    ap.add_argument("--peers", default="opendht,kademlia")
    ap.add_argument("--only", default="", help="comma list of scenarios")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "swarm.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    impls = ["ours"] + [p for p in args.peers.split(",") if p and p != "none"]
    table = QUICK if args.quick else SCENARIOS
    wanted = [s for s in table if not args.only or s in args.only.split(",")]
    doc: dict = {
        "command": "bench/bench_swarm.py " + " ".join(argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "layout": "N nodes split over 4 worker processes (asyncio loop each; OpenDHT runners keep their own C++ "
                  "threads); crashed nodes in their own process, SIGKILLed; lookups sequential, one in flight",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": {},
    }
    for name in wanted:
        print("scenario %s: %s" % (name, ", ".join(impls)), flush=True)
        t0 = time.perf_counter()
        doc["scenarios"][name] = run_comparison(impls, seed=args.seed, **table[name])
        print("  done in %.1f s" % (time.perf_counter() - t0), flush=True)
        for impl, r in doc["scenarios"][name]["results"].items():
            if "unavailable" in r:
                print("  %-9s unavailable: %s" % (impl, r["unavailable"]))
            else:
                print("  %-9s success %.3f  latency p50 %s p99 %s ms  first p50 %s ms  hops p50 %s  req/lookup %s"
                      % (impl, r["success_rate"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
                         r["first_ms"]["p50"], (r["hops"] or {}).get("p50"), r["requests_per_lookup"]), flush=True)
    goals: dict = {}
    if "healthy64" in doc["scenarios"]:
        res = doc["scenarios"]["healthy64"]["results"]
        ours_p50 = _goal(res, "ours", ("latency_ms", "p50"))
        odht_p50 = _goal(res, "opendht", ("latency_ms", "p50"))
        goals["healthy64_success_1"] = _goal(res, "ours", ("success_rate",)) == 1.0
        goals["healthy64_p50_le_opendht"] = (None if ours_p50 is None or odht_p50 is None
                                             else ours_p50 <= odht_p50)
    if "crash32" in doc["scenarios"]:
        res = doc["scenarios"]["crash32"]["results"]
        p99 = _goal(res, "ours", ("latency_ms", "p99"))
        goals["crash32_success_1"] = _goal(res, "ours", ("success_rate",)) == 1.0
        goals["crash32_p99_le_100ms"] = None if p99 is None else p99 <= 100.0
    doc["goals"] = goals
    if args.only and args.out.exists():  # a partial run updates its scenarios, keeps the others
        try:
            old = json.loads(args.out.read_text())
            old["scenarios"].update(doc["scenarios"])
            old["goals"].update(goals)
            old.setdefault("partial_runs", []).append({"command": doc["command"], "started": doc["started"]})
            doc = old
        except (ValueError, KeyError, TypeError) as exc:
            print("could not merge into %s (%s); overwriting" % (args.out, exc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print("goals: %s" % json.dumps(goals))
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
