"""A test oracle: the synthesis maths written again, one packet at a time in plain Python, so the
vectorised `qis_gateway.synthesis` can be checked against an independent implementation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from qis_gateway.packets import OutcomePacket
from qis_gateway.synthesis import HALF_LIFE_S, MIN_N, TOP, Summary, not_enough, wilson_lower


def synthesise_loop(
    query_vector: Sequence[int],
    packets: Sequence[OutcomePacket],
    now_s: float,
    *,
    half_life_s: float | None = HALF_LIFE_S,
    min_n: float = MIN_N,
    top: int = TOP,
) -> Summary:
    """The baseline: the same maths as synthesis.synthesise, one packet at a time in pure Python."""
    q_norm = math.sqrt(sum(x * x for x in query_vector))
    total = total_sq = total_ws = 0.0
    n = 0
    by_label: dict[str, float] = {}
    value_w = value_w_sq = value_sum = 0.0
    for p in packets:
        if q_norm == 0.0:
            sim = 1.0
        else:
            p_norm = math.sqrt(sum(x * x for x in p.vector))
            dot = sum(a * b for a, b in zip(p.vector, query_vector, strict=True))
            sim = 0.0 if p_norm == 0.0 else dot / (p_norm * q_norm)
            sim = min(max(sim, 0.0), 1.0)
        w = sim * p.weight
        if half_life_s is not None:
            w *= 2.0 ** (-max(now_s - p.created_s, 0.0) / half_life_s)
        if w <= 0.0:
            continue
        n += 1
        total += w
        total_sq += w * w
        total_ws += w * sim
        by_label[p.label] = by_label.get(p.label, 0.0) + w
        if p.value is not None:
            value_w += w
            value_w_sq += w * w
            value_sum += w * p.value
    if total <= 0.0:
        return not_enough()
    n_eff = total * total / total_sq
    if n_eff < min_n - 1e-9:
        return not_enough(n, n_eff)
    ranked = sorted(((w / total, label) for label, w in by_label.items()), key=lambda t: (-round(t[0], 12), t[1]))
    best = tuple((label, share) for share, label in ranked[:top])
    confidence = wilson_lower(best[0][1], n_eff) * total_ws / total
    mean = None
    if value_w > 0.0 and value_w * value_w / value_w_sq >= min_n - 1e-9:
        mean = value_sum / value_w
    return Summary(True, n, n_eff, best, confidence, mean)


def summaries_agree(a: Summary, b: Summary, rel_tol: float = 1e-9) -> bool:
    """Same decision, labels and counts; the same figures up to floating-point summation order."""

    def close(x: float | None, y: float | None) -> bool:
        return x is None and y is None or x is not None and y is not None and math.isclose(x, y, rel_tol=rel_tol)

    return (
        a.enough == b.enough
        and a.n == b.n
        and close(a.n_eff, b.n_eff)
        and [label for label, _ in a.top] == [label for label, _ in b.top]
        and all(close(x, y) for (_, x), (_, y) in zip(a.top, b.top, strict=True))
        and close(a.confidence, b.confidence)
        and close(a.mean_value, b.mean_value)
    )
