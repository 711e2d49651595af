"""The synthesis path a reading takes in the gateway, at 5, 100 and 1,000 packets per address.

What is timed is what the bridge runs for one fp once the swarm has answered: `Evidence.summarise`
(the gateway's one path) over an in-memory swarm that answers at once, then the summary frame encoding
(`qis.messages.encode_summary`). So the figure is the gateway's own CPU for one looked-up level, without
the network. Its parts are timed in the same run by calling the very functions the path calls:

    lookup_ms      `select_packets`: N verified-cache lookups (all hits: a node verifies each packet once,
                   at STORE), de-duplication, newest-first order and the per-signer cap
    columns_ms     building the column store from the selection (the path builds one per lookup)
    synthesis_ms   `synthesise_columns`: similarity, recency, shares, confidence
    encode_ms      `BoardSummary.of` + `encode_summary` (HMAC-tagged JSON frame)
    path_ms        all of it end to end: `await Evidence.summarise(...)` + `encode_summary`
    verify_cold_ms the same N values verified for the first time (Ed25519), for scale: paid once per packet

Settings are the configured defaults except `lookup_limit = max_packets = N` (all N are read and
synthesised) and `min_n = 1`; the packets come from ceil(N / 50) signers, so the default per-signer
cap keeps them all. Each figure is the median of `--repeat` runs. Writes bench/results/synthesis.json.

Run: .venv/bin/python bench/bench_synthesis.py [--packets 5,100,1000] [--repeat 200] [--json] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qis import messages
from qis_gateway.backend import LookupResult
from qis_gateway.columns import PacketColumns
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import BoardSummary, Evidence, select_packets
from qis_gateway.keys import signing_key_from_seed
from qis_gateway.metrics import Metrics
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import OutcomePacket, encode, verify
from qis_gateway.service import VERIFIED_CACHE_ENTRIES
from qis_gateway.synthesis import synthesise_columns

RESULT = Path(__file__).resolve().parent / "results" / "synthesis.json"
NOW_S = 1_800_000_000
ADDRESS = bytes(range(32))
LABELS = ("normal", "bearing_wear", "misalignment", "cavitation", "seal_leak")
SECRET = bytes(32)


class InstantSwarm:
    """Answers every get at once with the address's values (the swarm's cost is not measured here)."""

    def __init__(self, values: tuple[bytes, ...]) -> None:
        self.values = values

    async def get(self, address: bytes, limit: int = 200) -> LookupResult:
        return LookupResult(self.values[:limit], 1, 1, 0.0, 0.0)


def make_values(count: int, dims: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = [signing_key_from_seed(rng.randbytes(32)) for _ in range(-(-count // 50))]  # 50 packets each at most
    out = []
    for i in range(count):
        packet = OutcomePacket(address=ADDRESS, schema_id="bench/1", created_s=NOW_S - rng.randrange(60 * 86_400),
                               vector=tuple(rng.randint(-127, 127) for _ in range(dims)), label=rng.choice(LABELS),
                               value=round(rng.uniform(0, 10), 3) if rng.random() < 0.66 else None,
                               weight=round(rng.uniform(0.1, 1.0), 3))
        out.append(encode(packet, keys[i % len(keys)]))
    return out


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


async def measure(evidence: Evidence, parts: dict[str, Callable[[], object]], query: list[int],
                  repeat: int) -> tuple[dict[str, float], BoardSummary]:
    """Median ms of the whole path and of each part. They take turns within every repetition, so a load
    that comes and goes on a shared machine weighs on all figures alike."""
    times: dict[str, list[float]] = {"path_ms": [], **{name: [] for name in parts}}
    summary = None
    for _ in range(repeat):
        start = time.perf_counter()
        summary = await evidence.summarise(query, [ADDRESS])
        messages.encode_summary("bench-board", 1, SECRET, summary)
        times["path_ms"].append((time.perf_counter() - start) * 1000.0)
        for name, fn in parts.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    if summary is None:
        raise ValueError("repeat must be >= 1")
    return {name: statistics.median(t) for name, t in times.items()}, summary


def run(count: int, dims: int, seed: int, repeat: int) -> dict[str, Any]:
    values = make_values(count, dims, seed)
    rng = random.Random(seed + 1)
    query = [rng.randint(-127, 127) for _ in range(dims)]
    settings = dataclasses.replace(SynthesisSettings(), min_n=1, max_packets=count)
    cache = VerifiedPacketCache(VERIFIED_CACHE_ENTRIES)
    verify_cold_ms = median_ms(lambda: [verify(v, None, ADDRESS) for v in values], max(1, min(repeat // 20, 5)))
    for value in values:  # as the gateway's own node did at STORE
        cache.verify(value, None, ADDRESS)
    evidence = Evidence(InstantSwarm(tuple(values)), cache, Metrics(), settings, lookup_limit=count,
                        clock=lambda: float(NOW_S))
    selection = select_packets(values, ADDRESS, cache, None, settings)
    if len(selection.packets) != count:
        raise RuntimeError("the cap or the budget kept %d of %d packets: the figures would not be for N" % (
            len(selection.packets), count))
    columns = PacketColumns.from_packets(selection.packets, ADDRESS)

    def synthesis() -> Any:
        return synthesise_columns(query, columns, NOW_S, half_life_s=settings.half_life_s, min_n=settings.min_n,
                                  top=settings.top)

    synth = synthesis()
    parts: dict[str, Callable[[], object]] = {
        "lookup_ms": lambda: select_packets(values, ADDRESS, cache, None, settings),
        "columns_ms": lambda: PacketColumns.from_packets(selection.packets, ADDRESS),
        "synthesis_ms": synthesis,
        "encode_ms": lambda: messages.encode_summary("bench-board", 1, SECRET, BoardSummary.of(synth, 0, 1, 0)),
    }
    figures, summary = asyncio.run(measure(evidence, parts, query, repeat))
    return {
        "packets": count,
        "dims": dims,
        **{name: round(ms, 4) for name, ms in figures.items()},
        "verify_cold_ms": round(verify_cold_ms, 3),
        "per_packet_us": round(figures["path_ms"] * 1000.0 / count, 2),
        "summary": {"n": summary.n, "top": [list(t) for t in summary.top], "conf": summary.conf,
                    "same_as_parts": dataclasses.replace(summary, ms=0) == BoardSummary.of(synth, 0, 1, 0)},
        "repeat": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_synthesis.py", description=__doc__.split("\n")[0])
    parser.add_argument("--packets", default="5,100,1000", help="packets per address, comma-separated")
    parser.add_argument("--dims", type=int, default=3, help="vector dimensions (default 3)")
    parser.add_argument("--repeat", type=int, default=200, help="repetitions per figure (median taken)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--out", type=Path, default=RESULT, help="where to write the JSON (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.packets.split(",")]
    except ValueError:
        parser.error("--packets must be comma-separated integers")
    if any(c < 1 for c in counts) or not 0 <= args.dims <= 128 or args.repeat < 1:
        parser.error("--packets and --repeat must be >= 1, --dims in 0..128")
    result = {
        "what": "the gateway's synthesis path per looked-up address (Evidence.summarise + encode_summary)",
        "command": "bench/bench_synthesis.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "arch": platform.machine()},
        "runs": [run(c, args.dims, args.seed, args.repeat) for c in counts],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print("%8s %9s %9s %10s %12s %9s %14s" % ("packets", "path_ms", "lookup_ms", "columns_ms", "synthesis_ms",
                                                  "encode_ms", "verify_cold_ms"))
        for r in result["runs"]:
            print("%8d %9.3f %9.3f %10.3f %12.3f %9.3f %14.1f" % (
                r["packets"], r["path_ms"], r["lookup_ms"], r["columns_ms"], r["synthesis_ms"], r["encode_ms"],
                r["verify_cold_ms"]))
    return 0 if all(r["summary"]["same_as_parts"] for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
