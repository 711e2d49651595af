"""The UDP benchmark harness (bench/bench_udp.py, outside the installed package): argument checks, our engine
across worker processes with a crashed share, a missing peer engine reported instead of failing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCH_UDP = str(BENCH / "bench_udp.py")


@pytest.fixture
def bench_udp(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))  # spawned workers inherit sys.path
    import bench_udp

    return bench_udp


def test_bad_arguments_are_usage_errors(bench_udp, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        bench_udp.build_parser().parse_args(["--nodes", "8", "--values", "1", "--lookups", "1", "--crash", "x"])
    assert exc.value.code == 2
    assert bench_udp.main(["--nodes", "4", "--values", "1", "--lookups", "1", "--peers", "bogus"]) == 2
    assert "unknown peer" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, BENCH_UDP, "--nodes", "4", "--values", "1", "--lookups", "1", "--backend",
                           "chord"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown backend" in proc.stderr


def test_bench_runs_ours_across_processes() -> None:
    out = subprocess.run([sys.executable, BENCH_UDP, "--nodes", "8", "--values", "4", "--lookups", "10", "--procs",
                          "2", "--crash", "0.25", "--peers", "none", "--json"], capture_output=True, text=True,
                         timeout=240, check=True)
    ours = json.loads(out.stdout)["results"]["ours"]
    assert ours["nodes"] == 8 and ours["crashed_nodes"] == 2 and ours["procs"] == 2
    assert ours["success_rate"] == 1.0
    assert ours["latency_ms"]["p50"] > 0 and ours["requests_per_lookup"] >= 1


def test_bench_reports_a_missing_peer_instead_of_failing(bench_udp, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "opendht", None)  # as if `pip install opendht` never ran
    assert bench_udp.main(["--nodes", "4", "--values", "1", "--lookups", "3", "--procs", "1", "--peers", "opendht",
                           "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "pip install" in doc["results"]["opendht"]["unavailable"]
    assert doc["results"]["ours"]["success_rate"] == 1.0
