"""One usefulness run on AI4I: QIS through the real system, site-local, central and base rate, all on the
same rows, scored on the same last 30% of the file.

How it works: `usefulness(sites, seed, ...)` splits the rows over the sites (seeded), replays them
through the real system (replay.py), replays them again in-process twice with the same Bridge code
(evaluate.py): once with one shared swarm (QIS, to show the in-process evaluator agrees with the real
path) and once with a swarm per site (site-local: each gateway only ever sees its own site's outcomes),
fits the central model on the pooled history (central.py, when scikit-learn is installed) and scores
everything with judge.py. `real=False` skips the real system and reports the in-process QIS as `qis`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qis.schema import Schema

from qis_gateway.config import SynthesisSettings
from qis_gateway.usefulness import central, evaluate, judge
from qis_gateway.usefulness.data import Row, load_rows, split_sites, train_cut
from qis_gateway.usefulness.replay import ReplaySystem, gateway_settings, run_replay
from qis_gateway.usefulness.schema_ai4i import packaged_schema

# Chosen on the tuning split (seeds 1-3, history rows only): bench/experiments/usefulness_tuning.py.
MIN_N = 5
HALF_LIFE_S = 30 * 86400.0  # the packaged default: recency did not help on this stationary data
MIN_PER_SIGNER = 50  # every site's gateway may contribute its newest 50 per address (the share cap beyond)
LEVEL_POLICY = "max"  # every level (the schema's views) with enough evidence answers: levelmix.py
LOOKUP_LIMIT = 256  # = the swarm's per-address cap: a lookup sees all an address holds


def synthesis_settings() -> SynthesisSettings:
    return SynthesisSettings(min_n=MIN_N, half_life_s=HALF_LIFE_S, min_per_signer=MIN_PER_SIGNER, top=10,
                             level_policy=LEVEL_POLICY)


def replay_gateway_settings() -> dict[str, dict[str, Any]]:
    return gateway_settings(MIN_N, HALF_LIFE_S, MIN_PER_SIGNER, LOOKUP_LIMIT, LEVEL_POLICY)


def _ordered(preds: list[evaluate.Prediction]) -> list[tuple[Row, int, dict[str, Any]]]:
    return [(p.row, p.site, p.summary) for p in preds]


def usefulness(rows: list[Row] | None = None, sites: int = 8, seed: int = 4, *, real: bool = True,
               workdir: Path | None = None, tick: Callable[[ReplaySystem, float], None] | None = None,
               curves: bool = True, agreement: bool = True, scored_from: int | None = None) -> dict[str, Any]:
    """`scored_from`: first scored row (default: the 70/30 cut; the central model trains on the rows
    before the cut either way). `agreement`: also replay QIS in-process and compare with the real path."""
    rows = rows if rows is not None else load_rows()
    cut = train_cut(len(rows))
    history = rows[:cut]
    first = cut if scored_from is None else scored_from
    scored = rows[first:]
    sites_rows = split_sites(rows, sites, seed)
    schema = Schema(packaged_schema())
    settings = synthesis_settings()
    out: dict[str, Any] = {"dataset": "ai4i2020", "rows": len(rows), "sites": sites, "seed": seed,
                           "scored_rows": [first, len(rows) - 1],
                           "settings": {"min_n": MIN_N, "half_life_s": HALF_LIFE_S, "min_per_signer": MIN_PER_SIGNER,
                                        "lookup_limit": LOOKUP_LIMIT,
                                        "level_policy": LEVEL_POLICY}}
    if real:
        with tempfile.TemporaryDirectory(prefix="qis-ai4i-") as tmp:
            results, figures = run_replay(sites_rows, workdir or Path(tmp), replay_gateway_settings(), tick)
        ordered = []
        for site, result in enumerate(results):
            ordered += [(row, site, summary or {}) for row, summary in zip(result.rows, result.summaries,
                                                                             strict=False)]
        sent = sum(len(r.summaries) for r in results)
        answered = sum(1 for r in results for s in r.summaries if s is not None)
        labels_ok = all(r.labels_reported == [row.label for row in r.rows] for r in results)
        qis_probs = judge.probabilities(ordered)
        out["real_path"] = {**figures, "readings": sent, "answered": answered,
                            "outcomes_match_rows": labels_ok,
                            "prequential_violations": sum(r.prequential_violations for r in results),
                            "gateway_ms": _percentiles([ms for r in results for ms in r.gateway_ms]),
                            "round_trip_ms": _percentiles([ms for r in results for ms in r.round_trip_ms])}
        out["lost"] = len(rows) - answered
        missing = [r for r in rows if r.index not in qis_probs]
        for row in missing:  # a lost reading (counted in "lost") scores 0
            qis_probs[row.index] = {"failure": 0.0, **{m: 0.0 for m in ("TWF", "HDF", "PWF", "OSF", "RNF")}}
    in_process_probs: dict[int, dict[str, float]] = {}
    if agreement or not real:
        in_process, _ = evaluate.replay_in_process(sites_rows, schema, settings, shared=True)
        in_process_probs = judge.probabilities(_ordered(in_process))
    local, _ = evaluate.replay_in_process(sites_rows, schema, settings, shared=False)
    local_probs = judge.probabilities(_ordered(local))
    if not real:
        qis_probs = in_process_probs
        out["lost"] = 0
    out["qis"] = judge.score_rows(scored, qis_probs, curve=curves)
    out["qis"]["over_time"] = judge.over_time(rows, qis_probs)
    if in_process_probs:
        out["qis_in_process"] = judge.score_rows(scored, in_process_probs)
    out["site_local"] = judge.score_rows(scored, local_probs, curve=curves)
    out["site_local"]["over_time"] = judge.over_time(rows, local_probs)
    if real and in_process_probs:
        both = [r.index for r in rows]
        diffs = [abs(qis_probs[i]["failure"] - in_process_probs[i]["failure"]) for i in both]
        out["agreement"] = {"mean_abs_diff_p_failure": round(sum(diffs) / len(diffs), 4),
                            "pr_auc_real": out["qis"]["pr_auc"], "pr_auc_in_process": out["qis_in_process"]["pr_auc"]}
    central_probs = central.central_probabilities(history, scored) if first >= cut else None
    if central_probs is None:
        note = ("scikit-learn is not installed: pip install 'qis-edge[bench]'" if first >= cut else
                "scored rows overlap its training rows")
        out["central"] = {"available": False, "note": note}
    else:
        out["central"] = {"available": True, **judge.score_rows(scored, central_probs, curve=curves)}
        raw_only = central.central_probabilities(history, scored, derived=False)
        assert raw_only is not None
        out["central_raw_columns"] = judge.score_rows(scored, raw_only)
    out["base_rate"] = judge.base_rate_scores(scored, history)
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / mean of a latency sample (empty: zeros), rounded to 0.1."""
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    ordered = sorted(samples)
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99))
    return {"p50": round(p50, 1), "p99": round(p99, 1), "mean": round(sum(ordered) / len(ordered), 1)}
