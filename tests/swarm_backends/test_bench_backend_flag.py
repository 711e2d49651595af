"""`qis-swarm bench --backend opendht` measures OpenDHT alone on the same harness as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opendht", reason="OpenDHT is an optional package (pip install 'opendht>=3.0')")

QIS_SWARM = str(Path(sys.executable).parent / "qis-swarm")


def test_bench_runs_one_backend_alone() -> None:
    out = subprocess.run([QIS_SWARM, "bench", "--nodes", "8", "--values", "3", "--lookups", "10", "--procs", "2",
                          "--backend", "opendht", "--json"], capture_output=True, text=True, timeout=240, check=True)
    results = json.loads(out.stdout)["results"]
    assert list(results) == ["opendht"]
    assert results["opendht"]["success_rate"] == 1.0
    assert results["opendht"]["lookups"] == 10


def test_unknown_backend_is_a_usage_error() -> None:
    proc = subprocess.run([QIS_SWARM, "bench", "--nodes", "4", "--values", "1", "--lookups", "1", "--backend",
                           "chord"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown backend" in proc.stderr
