"""`bench/bench_udp.py --backend opendht` measures OpenDHT alone on the same harness as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opendht", reason="OpenDHT is an optional package (pip install 'opendht>=3.0')")

BENCH_UDP = str(Path(__file__).resolve().parents[2] / "bench" / "bench_udp.py")


def test_bench_runs_one_backend_alone() -> None:
    out = subprocess.run([sys.executable, BENCH_UDP, "--nodes", "8", "--values", "3", "--lookups", "10", "--procs", "2",
                          "--backend", "opendht", "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]  # the bench's own log says what failed
    results = json.loads(out.stdout)["results"]
    assert list(results) == ["opendht"]
    assert results["opendht"]["success_rate"] == 1.0
    assert results["opendht"]["lookups"] == 10


def test_unknown_backend_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, BENCH_UDP, "--nodes", "4", "--values", "1", "--lookups", "1", "--backend",
                           "chord"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown backend" in proc.stderr
