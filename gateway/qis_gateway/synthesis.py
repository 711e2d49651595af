"""Layer-5 synthesis: turn the verified packets of an address into the small summary a board gets back.

How it works (every step is one numpy operation over all packets; docs/packets.md has the derivation)
------------------------------------------------------------------------------------------------------
For packet i with int8 vector v_i, own weight c_i (0 < c_i <= 1), creation time t_i and label l_i, and the
board's query vector q:

    s_i  = cos(q, v_i) = (v_i . q) / (|v_i| |q|)      cosine similarity, one matrix-vector product (exact
                                                    integer dot products, so orthogonal means exactly 0)
           (undefined for a zero vector: a zero query, or a schema without continuous fields, carries no
           direction, so every packet gets s_i = 1 -- the categorical match is the only evidence; a zero
           packet vector against a non-zero query gets s_i = 0 -- it cannot be shown to be similar)
    r_i  = 2 ** (-max(now - t_i, 0) / half_life)    recency; future timestamps (clock skew) count as now
    w_i  = max(s_i, 0) * r_i * c_i                  negative similarity counts nothing
    n    = #{i : w_i > 0}                           packets that contribute
    n_eff = (sum w)^2 / sum w^2                     Kish effective sample size (1 <= n_eff <= n)
    share(l) = sum_{l_i = l} w_i / sum w            outcome distribution, sums to 1
    top  = labels by share descending, ties by label text ascending, first `top`
    confidence = wilson95_lower(share(top[0]), n_eff) * (sum w_i s_i / sum w_i)
                 -- the 95% Wilson-score lower bound of the leading share, taking n_eff as the sample size,
                 times the weighted mean similarity of the evidence: high only when many, mutually
                 independent-looking, similar packets agree. In [0, 1); 0 when there is not enough evidence.
    mean_value = sum w_i x_i / sum w_i over the contributing packets that carry a value x_i, reported only
                 when those packets alone reach the minimum count too (else None).

Minimum-count guard: when n_eff < min_n the summary has enough=False, no distribution, no confidence and no
mean, so one site's single event is never echoed back as a statistic.

This module is the maths only. Which packets it sees (verification, the per-signer cap, the newest ones)
and which schema level answers (the fallback rule) is decided in evidence.py, the gateway's one path;
the default of each parameter is the `[synthesis]` setting's (config.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qis_gateway.columns import PacketColumns
from qis_gateway.config import default

HALF_LIFE_S: float = default("synthesis", "half_life_s")
MIN_N: int = default("synthesis", "min_n")
TOP: int = default("synthesis", "top")
WILSON_Z = 1.96  # two-sided 95%
_TIE_DECIMALS = 12  # shares equal to 12 decimals are a tie (summation order must not pick the winner)
_add = np.add.reduce  # what ndarray.sum() calls, without its Python wrapper

@dataclass(frozen=True, slots=True)
class Summary:
    """What synthesis found at one address: shares and confidence as fractions (evidence.BoardSummary
    turns them into the board's permille)."""

    enough: bool
    n: int
    n_eff: float
    top: tuple[tuple[str, float], ...]
    confidence: float
    mean_value: float | None


def wilson_lower(p: float, n: float, z: float = WILSON_Z) -> float:
    """Lower bound of the Wilson score interval for a proportion p observed over n (possibly fractional)."""
    if n <= 0:
        return 0.0
    z2n = z * z / n
    centre = p + z2n / 2
    spread = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, (centre - spread) / (1 + z2n))


def not_enough(n: int = 0, n_eff: float = 0.0) -> Summary:
    return Summary(False, n, n_eff, (), 0.0, None)


def _check_params(half_life_s: float | None, min_n: float, top: int) -> None:
    if half_life_s is not None and not half_life_s > 0:
        raise ValueError("half_life_s must be positive (or None for no decay), got %r" % (half_life_s,))
    if not min_n >= 1:
        raise ValueError("min_n must be at least 1, got %r" % (min_n,))
    if top < 1:
        raise ValueError("top must be at least 1, got %r" % (top,))


def synthesise_columns(
    query_vector: Sequence[int] | np.ndarray,
    columns: PacketColumns,
    now_s: float,
    *,
    half_life_s: float | None = HALF_LIFE_S,
    min_n: float = MIN_N,
    top: int = TOP,
) -> Summary:
    """Synthesis over a column store (the warm path). See the module docstring for the maths."""
    _check_params(half_life_s, min_n, top)
    count = len(columns)
    if count == 0:
        return not_enough()
    q = np.asarray(query_vector, dtype=np.float64)
    if q.ndim != 1 or q.shape[0] != columns.dims:
        raise ValueError("query vector has %s dimensions, the packets have %d" % (q.shape, columns.dims))
    # The arrays are small (hundreds of rows), so numpy's per-call overhead is most of the cost: ufuncs
    # with out= rather than wrappers (np.clip, ndarray.sum, flatnonzero), each column read once. Every
    # value is bit for bit the one of the plain expressions in the module docstring's order.
    q_norm = math.sqrt(float(q @ q)) if q.shape[0] else 0.0
    if q_norm == 0.0:
        sim = np.ones(count)
    else:
        sim = columns.vectors @ q
        np.multiply(sim, columns.inv_norm, out=sim)
        np.multiply(sim, 1.0 / q_norm, out=sim)
        np.maximum(sim, 0.0, out=sim)  # negatives count nothing
        np.minimum(sim, 1.0, out=sim)  # rounding may exceed 1 by an ulp
    w = sim * columns.weights
    if half_life_s is not None:
        age = np.subtract(now_s, columns.times)
        np.maximum(age, 0.0, out=age)
        np.multiply(age, -1.0 / half_life_s, out=age)
        np.multiply(w, np.exp2(age, out=age), out=w)
    total = float(_add(w))
    if not total > 0.0:
        return not_enough()
    n = int(np.count_nonzero(w))
    n_eff = total * total / float(w @ w)
    if n_eff < min_n - 1e-9:
        return not_enough(n, n_eff)
    labels = columns.labels
    shares = (np.bincount(columns.codes, weights=w, minlength=len(labels)) / total).tolist()
    ranked = sorted((c for c, share in enumerate(shares) if share > 0.0),
                    key=lambda c: (-round(shares[c], _TIE_DECIMALS), labels[c]))
    best = [(labels[c], shares[c]) for c in ranked[:top]]
    confidence = wilson_lower(best[0][1], n_eff) * float(w @ sim) / total
    mean = None
    values = columns.values
    has_value = w > 0.0
    np.logical_and(has_value, values == values, out=has_value)  # x == x: not NaN
    if has_value.any():
        wv = w[has_value]
        wv_total = float(_add(wv))
        if wv_total * wv_total / float(wv @ wv) >= min_n - 1e-9:
            mean = float(wv @ values[has_value]) / wv_total
    return Summary(True, n, n_eff, tuple(best), confidence, mean)
