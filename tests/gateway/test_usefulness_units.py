"""The AI4I usefulness parts without the real system: data, schema, scores, level policy "max", evaluator."""

from __future__ import annotations

import subprocess
import sys

import pytest
from qis.schema import Schema
from qis_gateway.config import ConfigError, SynthesisSettings, build_config
from qis_gateway.levelmix import combine
from qis_gateway.packets import verify
from qis_gateway.synthesis import Summary
from qis_gateway.usefulness import data, evaluate, judge
from qis_gateway.usefulness.schema_ai4i import build_schema, packaged_schema, schema_text
from qis_gateway.usefulness.scores import pr_auc, recall_at_precision, roc_auc


def test_rows_labels_and_counts_match_the_published_description() -> None:
    rows = data.load_rows()
    assert len(rows) == 10_000 and sum(r.failed for r in rows) == 339
    assert sum(r.has_mode("HDF") for r in rows) == 115
    assert sum(r.has_mode("OSF") for r in rows) == 98
    assert {r.reading["type"] for r in rows} == {"L", "M", "H"}
    assert all(r.label == data.NONE for r in rows if not r.failed)
    first = rows[0].reading  # 298.1 K / 308.6 K, 1551 rpm, 42.8 Nm, 0 min
    assert first["dtemp_k"] == 10.5 and first["power_w"] == pytest.approx(6951.59, abs=0.01)


def test_a_malformed_csv_names_the_line(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    text = data.data_path().read_text().splitlines()
    parts = text[3].split(",")
    parts[3] = "warm"  # air temperature
    bad.write_text("\n".join(text[:3] + [",".join(parts)]) + "\n")
    with pytest.raises(ValueError, match="line 4"):
        data.load_rows(bad)


def test_site_split_is_seeded_and_keeps_time_order() -> None:
    rows = data.load_rows()[:1000]
    a, b = data.split_sites(rows, 8, 4), data.split_sites(rows, 8, 4)
    assert [[r.index for r in s] for s in a] == [[r.index for r in s] for s in b]
    assert [[r.index for r in s] for s in a] != [[r.index for r in s] for s in data.split_sites(rows, 8, 5)]
    assert sorted(r.index for s in a for r in s) == list(range(1000))
    assert all(s == sorted(s, key=lambda r: r.index) for s in a)


def test_packaged_schema_is_the_history_quantiles() -> None:
    rows = data.load_rows()
    rebuilt = build_schema(rows[:data.train_cut(len(rows))])
    assert schema_text(rebuilt) == schema_text(packaged_schema())
    schema = Schema(packaged_schema())  # parses, and every row fingerprints
    assert len({tuple(sorted(schema.fingerprint(r.reading).fields.items())) for r in rows[:2000]}) > 50


def test_scores_against_hand_computed_values() -> None:
    y = [1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.2, 0.2]
    # ranked: 1 (P=1, R=.5), 0, 1 (P=2/3, R=1) -> AP = .5*1 + .5*2/3
    assert pr_auc(y, s) == pytest.approx(0.5 + 1 / 3)
    assert roc_auc(y, s) == pytest.approx(5 / 6)
    assert recall_at_precision(y, s, 0.9) == 0.5
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5  # ties count one half
    assert pr_auc([0, 0], [0.1, 0.2]) is None


def test_p_failure_from_summary_shares() -> None:
    share = judge.shares({"enough": True, "top": [["none", 900], ["PWF+OSF", 60], ["HDF", 40]]})
    assert share is not None
    assert judge.p_failure(share) == pytest.approx(0.1)
    assert judge.p_mode(share, "OSF") == pytest.approx(0.06)
    assert judge.shares({"enough": False, "top": []}) is None


def test_level_policy_max_keeps_each_outcomes_largest_share() -> None:
    exact = Summary(enough=True, n=6, n_eff=6.0, top=(("none", 1.0),), confidence=0.5, mean_value=None)
    view = Summary(enough=True, n=200, n_eff=200.0, top=(("none", 0.7), ("PWF", 0.3)), confidence=0.3,
                   mean_value=None)
    summary, level = combine([(0, exact), (3, view)], top=3)
    assert level == 0 and summary.n == 200 and summary.confidence == 0.5
    assert [(label, round(share, 3)) for label, share in summary.top] == [("none", 0.769), ("PWF", 0.231)]
    with pytest.raises(ValueError):
        combine([], top=3)


def test_level_policy_is_a_checked_setting() -> None:
    assert build_config({}).synthesis.level_policy == "first"
    assert build_config({"synthesis": {"level_policy": "max"}}).synthesis.level_policy == "max"
    with pytest.raises(ConfigError, match="synthesis.level_policy"):
        build_config({"synthesis": {"level_policy": "mean"}})


@pytest.mark.slow
def test_in_process_qis_beats_site_local_and_only_packets_cross() -> None:
    rows = data.load_rows()[:900]
    sites = data.split_sites(rows, 3, 1)
    schema = Schema(packaged_schema())
    settings = SynthesisSettings(min_n=5, top=10, level_policy="max")
    shared, swarms = evaluate.replay_in_process(sites, schema, settings, shared=True, keep_seen=True)
    local, _ = evaluate.replay_in_process(sites, schema, settings, shared=False)

    def score(preds: list[evaluate.Prediction]) -> float:
        probs = judge.probabilities((p.row, p.site, p.summary) for p in preds)
        return judge.score_rows(rows, probs)["pr_auc"]

    assert len(shared) == len(local) == 900
    assert score(shared) > score(local)
    seen = swarms[0].seen or []
    levels = 1 + len(packaged_schema()["coarser"])
    assert len(seen) >= (900 - 3) * levels  # the last round's outcomes are still in the outboxes
    vectors = {tuple(schema.fingerprint(r.reading).vector) for r in rows}
    for address, value in seen:
        packet = verify(value, None, address)
        assert tuple(packet.vector) in vectors and packet.value is None


def test_replay_sensor_under_micropython(tmp_path) -> None:
    """Each call reports the previous row's outcome (qis_device.report_outcome), then hands out the next
    row without its outcome; past the end it reports the last one and fails."""
    from qis_firmware.emulate import micropython_executable

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1.5, "outcome": "none"}\n{"a": 2, "outcome": "PWF"}\n')
    script = ("import sys\nsys.path.insert(0, %r)\nimport qis_device\n"
              "class Dev:\n    def report_outcome(self, label, value, weight, seq):\n        print('report', label)\n"
              "qis_device._current = Dev()\nfrom qis_device.replay import ReplaySensor\n"
              "s = ReplaySensor(%r)\nprint(s())\nprint(s())\n"
              "try:\n    s()\nexcept OSError as e:\n    print('end', e)\n" % (str(data_root()), str(rows)))
    out = subprocess.run([micropython_executable(), "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["{'a': 1.5}", "report none", "{'a': 2}", "report PWF",
                                       "end replay: no more recorded readings after 2"]


def data_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "device"


def test_qis_demo_dataset_flag_rejects_bad_input() -> None:
    for args in (["--dataset", "ai4i", "--sites", "0"], ["--dataset", "nope"], ["--dataset", "ai4i", "--rows", "5"]):
        proc = subprocess.run([sys.executable, "-m", "qis_gateway.demo", *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_level_policy_max_beats_first_on_the_views_schema() -> None:
    rows = data.load_rows()[:1500]  # the fine tail bands need ~1,000 rows before they fill
    sites = data.split_sites(rows, 3, 2)
    schema = Schema(packaged_schema())

    def score(policy: str) -> float:
        settings = SynthesisSettings(min_n=5, top=10, level_policy=policy)
        preds, _ = evaluate.replay_in_process(sites, schema, settings, shared=True)
        return judge.score_rows(rows, judge.probabilities((p.row, p.site, p.summary) for p in preds))["pr_auc"]

    assert score("max") > score("first") + 0.05
