"""The "max" level policy: every schema level with enough evidence answers, each outcome keeps its largest
share among them.

How it works: the default policy ("first") answers from the finest level whose bucket has min_n usable
packets. A schema's coarser levels need not be nested, though: each can be a different view of the
situation (one field, or a pair), and an outcome may show up clearly in one view and be diluted in the
others (a tool-strain failure is plain in the strain band, invisible in the temperature bands). With
`[synthesis] level_policy = "max"` the gateway synthesises every level and combines those with enough
evidence: share(l) = max over those levels of their share of outcome l, renormalised to sum 1; `n` and
`conf` are the largest among them, `mean` is the finest level's and `level` the finest level used.
Shares are fractions (the board's permille are made from them once, in evidence.BoardSummary); ties are
ordered by label text as in synthesis.
"""

from __future__ import annotations

from qis_gateway.synthesis import Summary


def combine(candidates: list[tuple[int, Summary]], top: int) -> tuple[Summary, int]:
    """(summary, level) from (level, summary) pairs that each have enough evidence, finest first."""
    if not candidates:
        raise ValueError("combine needs at least one level with enough evidence")
    best: dict[str, float] = {}
    for _, summary in candidates:
        for label, share in summary.top:
            if share > best.get(label, -1.0):
                best[label] = share
    total = sum(best.values())
    if total > 0:
        shares = {label: p / total for label, p in best.items()}
    else:
        shares = {label: 1.0 / len(best) for label in best} if best else {}
    ranked = sorted(shares.items(), key=lambda kv: (-round(kv[1], 12), kv[0]))[:top]
    first_level, finest = candidates[0]
    richest = max((s for _, s in candidates), key=lambda s: s.n)
    combined = Summary(enough=True, n=richest.n, n_eff=richest.n_eff, top=tuple(ranked),
                       confidence=max(s.confidence for _, s in candidates), mean_value=finest.mean_value)
    return combined, first_level
