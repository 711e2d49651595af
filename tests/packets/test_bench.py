"""The synthesis bench runs, reports every figure, and its vectorised and loop results agree.
(Speed goals are checked in bench/, not here: timings on a shared CI machine are not assertions.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qis_gateway import bench_synthesis

KEYS = {"warm_ms", "cold_ms", "verify_per_s", "baseline_ms", "speedup", "results_agree", "packets"}


def test_bench_main_prints_json_and_writes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results" / "synthesis.json"
    assert bench_synthesis.main(["--packets", "60", "--repeat", "5", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert KEYS <= printed.keys() and printed["packets"] == 60 and printed["results_agree"] is True
    assert printed == json.loads(out.read_text())
    assert printed["warm_ms"] > 0 and printed["baseline_ms"] > 0 and printed["verify_per_s"] > 0


def test_bench_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from qis_gateway import cli

    assert cli.main(["bench", "synthesis", "--packets", "30", "--repeat", "3", "--dims", "0"]) == 0
    text = capsys.readouterr().out
    assert "warm_ms" in text and "speedup" in text


def test_bench_refuses_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        bench_synthesis.main(["--packets", "0"])
