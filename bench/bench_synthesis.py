"""Synthesis speed: warm (columnar), cold (decode + verify + synthesise) and a per-packet Python loop baseline,
all measured in the same run over 1,000 signed packets. Writes bench/results/synthesis.json.

Run: .venv/bin/python bench/bench_synthesis.py [--packets N] (same as `qis-gateway bench synthesis --json`).
Goal (issue 5): warm 1,000 packets well under 2 ms and >= 10x the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qis_gateway import bench_synthesis

RESULT = Path(__file__).resolve().parent / "results" / "synthesis.json"

if __name__ == "__main__":
    sys.exit(bench_synthesis.main(["--packets", "1000", "--json", "--out", str(RESULT), *sys.argv[1:]]))
