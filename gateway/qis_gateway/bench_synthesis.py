"""`qis-gateway bench synthesis`: how fast is Layer-5 synthesis, warm and cold, against a plain loop.

How it works
------------
It signs N packets for one address (random int8 vectors, five labels, ages up to 60 days, values on about
two thirds, weights in [0.1, 1]) with a fixed seed, then measures in one run:

    cold_ms       decode + verify every packet (fresh cache) + build the columns + synthesise
    verify_per_s  packets verified per second within the cold path
    warm_ms       synthesise over the column store (packets already verified and in columns)
    build_ms      building the column store from N verified packets (PacketColumns.from_packets)
    cached_ms     the gateway's path: ColumnCache.columns(address, packets) finds the store by packet ids
                  (a cache hit), then synthesise -- what a repeated lookup of the same address costs
    baseline_ms   `synthesise_loop`: a straightforward per-packet Python loop doing the same maths over the
                  same verified packets (it is checked to give the same summary)
    speedup       baseline_ms / warm_ms

Each figure is the median of several repetitions. `--json` prints one JSON object; `--out FILE` also
writes it (bench/bench_synthesis.py writes bench/results/synthesis.json).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from qis_gateway.columns import ColumnCache, PacketColumns
from qis_gateway.keys import signing_key_from_seed
from qis_gateway.packets import OutcomePacket, VerifiedPacketCache, encode
from qis_gateway.synthesis import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_MIN_N,
    DEFAULT_TOP,
    Summary,
    not_enough,
    synthesise_columns,
    wilson_lower,
)

NOW_S = 1_800_000_000
ADDRESS = bytes(range(32))
LABELS = ("normal", "bearing_wear", "misalignment", "cavitation", "seal_leak")


def synthesise_loop(
    query_vector: Sequence[int],
    packets: Sequence[OutcomePacket],
    now_s: float,
    *,
    half_life_s: float | None = DEFAULT_HALF_LIFE_S,
    min_n: float = DEFAULT_MIN_N,
    top: int = DEFAULT_TOP,
) -> Summary:
    """The baseline: the same maths as synthesis.synthesise, one packet at a time in pure Python."""
    q_norm = math.sqrt(sum(x * x for x in query_vector))
    total = total_sq = total_ws = 0.0
    n = 0
    by_label: dict[str, float] = {}
    value_w = value_w_sq = value_sum = 0.0
    for p in packets:
        if q_norm == 0.0:
            sim = 1.0
        else:
            p_norm = math.sqrt(sum(x * x for x in p.vector))
            dot = sum(a * b for a, b in zip(p.vector, query_vector, strict=True))
            sim = 0.0 if p_norm == 0.0 else dot / (p_norm * q_norm)
            sim = min(max(sim, 0.0), 1.0)
        w = sim * p.weight
        if half_life_s is not None:
            w *= 2.0 ** (-max(now_s - p.created_s, 0.0) / half_life_s)
        if w <= 0.0:
            continue
        n += 1
        total += w
        total_sq += w * w
        total_ws += w * sim
        by_label[p.label] = by_label.get(p.label, 0.0) + w
        if p.value is not None:
            value_w += w
            value_w_sq += w * w
            value_sum += w * p.value
    if total <= 0.0:
        return not_enough()
    n_eff = total * total / total_sq
    if n_eff < min_n - 1e-9:
        return not_enough(n, n_eff)
    ranked = sorted(((w / total, label) for label, w in by_label.items()), key=lambda t: (-round(t[0], 12), t[1]))
    best = tuple((label, share) for share, label in ranked[:top])
    confidence = wilson_lower(best[0][1], n_eff) * total_ws / total
    mean = None
    if value_w > 0.0 and value_w * value_w / value_w_sq >= min_n - 1e-9:
        mean = value_sum / value_w
    return Summary(True, n, n_eff, best, confidence, mean)


def summaries_agree(a: Summary, b: Summary, rel_tol: float = 1e-9) -> bool:
    """Same decision, labels and counts; the same figures up to floating-point summation order."""

    def close(x: float | None, y: float | None) -> bool:
        return x is None and y is None or x is not None and y is not None and math.isclose(x, y, rel_tol=rel_tol)

    return (
        a.enough == b.enough
        and a.n == b.n
        and a.level == b.level
        and close(a.n_eff, b.n_eff)
        and [label for label, _ in a.top] == [label for label, _ in b.top]
        and all(close(x, y) for (_, x), (_, y) in zip(a.top, b.top, strict=True))
        and close(a.confidence, b.confidence)
        and close(a.mean_value, b.mean_value)
    )


def make_packets(count: int, dims: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    key = signing_key_from_seed(rng.randbytes(32))
    out = []
    for _ in range(count):
        packet = OutcomePacket(
            address=ADDRESS,
            schema_id="bench/1",
            created_s=NOW_S - rng.randrange(60 * 86_400),
            vector=tuple(rng.randint(-127, 127) for _ in range(dims)),
            label=rng.choice(LABELS),
            value=round(rng.uniform(0, 10), 3) if rng.random() < 0.66 else None,
            weight=round(rng.uniform(0.1, 1.0), 3),
        )
        out.append(encode(packet, key))
    return out


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run(count: int, dims: int, seed: int, repeat: int) -> dict:
    raw = make_packets(count, dims, seed)
    rng = random.Random(seed + 1)
    query = [rng.randint(-127, 127) for _ in range(dims)]
    verify_times = []

    def cold() -> Summary:
        cache = VerifiedPacketCache(max_entries=count + 1)
        start = time.perf_counter()
        packets = [cache.verify(data, None, ADDRESS) for data in raw]
        verify_times.append(time.perf_counter() - start)
        return synthesise_columns(query, PacketColumns.from_packets(packets, ADDRESS), NOW_S)

    cold_ms = _median_ms(cold, max(3, repeat // 20))
    cache = VerifiedPacketCache(max_entries=count + 1)
    packets = [cache.verify(data, None, ADDRESS) for data in raw]
    columns = PacketColumns.from_packets(packets, ADDRESS)
    warm_ms = _median_ms(lambda: synthesise_columns(query, columns, NOW_S), repeat)
    build_ms = _median_ms(lambda: PacketColumns.from_packets(packets, ADDRESS), max(3, repeat // 10))
    column_cache = ColumnCache()
    column_cache.columns(ADDRESS, packets)
    cached_ms = _median_ms(lambda: synthesise_columns(query, column_cache.columns(ADDRESS, packets), NOW_S), repeat)
    baseline_ms = _median_ms(lambda: synthesise_loop(query, packets, NOW_S), max(3, repeat // 10))
    fast, slow = synthesise_columns(query, columns, NOW_S), synthesise_loop(query, packets, NOW_S)
    agree = summaries_agree(fast, slow)
    return {
        "packets": count,
        "dims": dims,
        "warm_ms": round(warm_ms, 4),
        "cold_ms": round(cold_ms, 3),
        "verify_per_s": round(count / statistics.median(verify_times)),
        "build_ms": round(build_ms, 4),
        "cached_ms": round(cached_ms, 4),
        "baseline_ms": round(baseline_ms, 4),
        "speedup": round(baseline_ms / warm_ms, 1),
        "results_agree": bool(agree),
        "summary": {"n": fast.n, "n_eff": round(fast.n_eff, 2), "top": [[lb, round(s, 4)] for lb, s in fast.top],
                    "confidence": round(fast.confidence, 4)},
        "repeat": repeat,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "arch": platform.machine()},
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qis-gateway bench synthesis", description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=1000, help="packets at the address (default 1000)")
    parser.add_argument("--dims", type=int, default=3, help="vector dimensions (default 3)")
    parser.add_argument("--repeat", type=int, default=200, help="warm repetitions (median taken)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.packets < 1 or not 0 <= args.dims <= 128 or args.repeat < 1:
        parser.error("--packets and --repeat must be >= 1, --dims in 0..128")
    result = run(args.packets, args.dims, args.seed, args.repeat)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print("synthesis over %d packets (%d dims):" % (result["packets"], result["dims"]))
        for key in ("warm_ms", "cached_ms", "build_ms", "cold_ms", "verify_per_s", "baseline_ms", "speedup",
                    "results_agree"):
            print("  %-13s %s" % (key, result[key]))
    return 0 if result["results_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
