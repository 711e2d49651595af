"""Ranking scores of predicted probabilities against true 0/1 outcomes (numpy only).

How it works: predictions are sorted by score, descending; rows with equal scores form one threshold
(so ties are never broken by row order). At each threshold precision = TP / predicted positives and
recall = TP / all positives.
- `pr_auc`: average precision, sum over thresholds of (recall step) x precision (the step-wise area
  under the precision-recall curve, as scikit-learn's `average_precision_score`).
- `roc_auc`: the probability that a random positive scores above a random negative, ties counting 1/2
  (Mann-Whitney U with average ranks).
- `recall_at_precision`: the largest recall at any threshold whose precision is >= the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _curve(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at each distinct threshold, highest threshold first."""
    yt = np.asarray(y, dtype=np.float64)
    sc = np.asarray(s, dtype=np.float64)
    if yt.shape != sc.shape or yt.ndim != 1:
        raise ValueError("labels and scores must be 1-D of the same length")
    order = np.argsort(-sc, kind="mergesort")
    ys, ss = yt[order], sc[order]
    tp = np.cumsum(ys)
    last = np.r_[np.flatnonzero(np.diff(ss) != 0), len(ss) - 1] if len(ss) else np.array([], dtype=int)
    tp, predicted = tp[last], last + 1.0
    positives = tp[-1] if len(tp) else 0.0
    precision = tp / predicted
    recall = tp / positives if positives > 0 else np.zeros_like(tp)
    return precision, recall


def pr_auc(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float | None:
    """Average precision; None when there is no positive."""
    precision, recall = _curve(y, s)
    if not len(recall) or recall[-1] == 0:
        return None
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def roc_auc(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve; None unless both classes occur."""
    yt = np.asarray(y, dtype=bool)
    sc = np.asarray(s, dtype=np.float64)
    pos, neg = int(yt.sum()), int((~yt).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(sc, kind="mergesort")
    sorted_s = sc[order]
    ranks = np.empty(len(sc))
    ranks[order] = np.arange(1, len(sc) + 1, dtype=np.float64)
    # average ranks over ties
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    for first, count in zip(start[counts > 1], counts[counts > 1], strict=True):
        idx = order[first:first + count]
        ranks[idx] = ranks[idx].mean()
    u = ranks[yt].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


def recall_at_precision(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray,
                        target: float = 0.9) -> float | None:
    """Largest recall reachable with precision >= target (0.0 when none is); None with no positive."""
    precision, recall = _curve(y, s)
    if not len(recall) or recall[-1] == 0:
        return None
    ok = precision >= target - 1e-12
    return float(recall[ok].max()) if ok.any() else 0.0


def pr_points(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> tuple[list[float], list[float]]:
    """(recall, precision) lists for plotting a precision-recall curve."""
    precision, recall = _curve(y, s)
    return [round(float(r), 4) for r in recall], [round(float(p), 4) for p in precision]
