"""From summaries to probabilities, and the scores of one replay.

How it works: a summary's `top` lists outcome labels with their shares in permille (the gateway lists up
to `top` labels; the replay asks for all of them). P(failure) = 1 - share("none") when "none" is listed,
else the sum of the listed failure shares. P(mode) = the summed shares of the labels containing that mode
("PWF+OSF" counts for both). A summary without enough evidence (`enough` false) carries no
distribution: its row is scored with the failure rate the site has seen so far (what the board itself
knows). `score_rows` gives, for the rows scored (the last 30% of the file by default), ROC-AUC and
PR-AUC of P(failure), recall at 90% precision of each mode and of any failure, and the base rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from qis_gateway.usefulness.data import MODES, NONE, Row
from qis_gateway.usefulness.scores import pr_auc, pr_points, recall_at_precision, roc_auc

TARGET_PRECISION = 0.9


def shares(summary: dict[str, Any]) -> dict[str, float] | None:
    if not summary.get("enough") or not summary.get("top"):
        return None
    return {str(label): permille / 1000.0 for label, permille in summary["top"]}


def p_failure(share: dict[str, float]) -> float:
    if NONE in share:
        return max(0.0, 1.0 - share[NONE])
    return min(1.0, sum(share.values()))


def p_mode(share: dict[str, float], mode: str) -> float:
    return sum(v for label, v in share.items() if mode in label.split("+"))


def probabilities(ordered: Iterable[tuple[Row, int, dict[str, Any]]]) -> dict[int, dict[str, float]]:
    """Row index -> {"failure": p, mode: p, ...}. `ordered`: (row, site, summary) in replay order per site,
    so a site's running failure rate (for summaries without enough evidence) uses earlier rows only."""
    seen: dict[int, list[int]] = {}
    out: dict[int, dict[str, float]] = {}
    for row, site, summary in ordered:
        failures, total = seen.setdefault(site, [0, 0])
        share = shares(summary)
        if share is None:
            rate = (failures + 0.5) / (total + 1.0)
            out[row.index] = {"failure": rate, **{m: rate / len(MODES) for m in MODES}}
        else:
            out[row.index] = {"failure": p_failure(share), **{m: p_mode(share, m) for m in MODES}}
        seen[site] = [failures + int(row.failed), total + 1]
    return out


def score_rows(rows: Sequence[Row], probs: dict[int, dict[str, float]], curve: bool = False) -> dict[str, Any]:
    y = np.array([r.failed for r in rows], dtype=np.int8)
    s = np.array([probs[r.index]["failure"] for r in rows])
    out: dict[str, Any] = {"rows": len(rows), "failures": int(y.sum()), "pr_auc": _r(pr_auc(y, s)),
                           "roc_auc": _r(roc_auc(y, s)),
                           "recall_at_90_precision": _r(recall_at_precision(y, s, TARGET_PRECISION)),
                           "mode_recall_at_90_precision": {}}
    for mode in MODES:
        ym = np.array([r.has_mode(mode) for r in rows], dtype=np.int8)
        sm = np.array([probs[r.index][mode] for r in rows])
        out["mode_recall_at_90_precision"][mode] = _r(recall_at_precision(ym, sm, TARGET_PRECISION))
    if curve:
        out["pr_curve"] = dict(zip(("recall", "precision"), pr_points(y, s), strict=True))
    return out


def base_rate_scores(rows: Sequence[Row], history: Sequence[Row]) -> dict[str, Any]:
    """The base rate as a predictor: every row gets the history's failure rate (a constant)."""
    rate = sum(r.failed for r in history) / max(1, len(history))
    probs = {r.index: {"failure": rate, **{m: rate for m in MODES}} for r in rows}
    out = score_rows(rows, probs)
    out["rate"] = round(rate, 4)
    return out


def over_time(rows: Sequence[Row], probs: dict[int, dict[str, float]], windows: int = 10) -> list[dict[str, Any]]:
    """PR-AUC per consecutive window of rows in time order: the score as the swarm learns."""
    ordered = sorted(rows, key=lambda r: r.index)
    size = max(1, len(ordered) // windows)
    out = []
    for start in range(0, len(ordered) - size + 1, size):
        part = ordered[start:start + size]
        y = np.array([r.failed for r in part], dtype=np.int8)
        s = np.array([probs[r.index]["failure"] for r in part])
        out.append({"first_row": part[0].index, "last_row": part[-1].index, "pr_auc": _r(pr_auc(y, s))})
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
