"""The "max" level policy: every schema level with enough evidence answers, each outcome keeps its largest
share among them.

How it works: the default policy ("first") answers from the finest level whose bucket has min_n usable
packets. A schema's coarser levels need not be nested, though: each can be a different view of the
situation (one field, or a pair), and an outcome may show up clearly in one view and be diluted in the
others (a tool-strain failure is plain in the strain band, invisible in the temperature bands). With
`[synthesis] level_policy = "max"` the gateway synthesises every level and combines those with enough
evidence: share(l) = max over those levels of their share of outcome l, renormalised to sum 1; `n` and
`conf` are the largest among them, `mean` is the finest level's and `level` the finest level used.
Shares are the summary's permille integers; ties are ordered by label text as in synthesis.
"""

from __future__ import annotations

from typing import Any


def combine(candidates: list[tuple[int, dict[str, Any]]], top: int) -> tuple[dict[str, Any], int]:
    """(summary, level) from (level, summary dict) pairs that each have enough evidence, finest first."""
    if not candidates:
        raise ValueError("combine needs at least one level with enough evidence")
    best: dict[str, int] = {}
    for _, summary in candidates:
        for label, permille in summary["top"]:
            if permille > best.get(label, -1):
                best[label] = permille
    total = sum(best.values())
    if total > 0:
        shares = {label: p / total for label, p in best.items()}
    else:
        shares = {label: 1.0 / len(best) for label in best} if best else {}
    ranked = sorted(shares.items(), key=lambda kv: (-round(kv[1], 12), kv[0]))[:top]
    first_level, finest = candidates[0]
    out = {"enough": True, "n": max(s["n"] for _, s in candidates),
           "top": [[label, max(0, min(1000, int(round(share * 1000))))] for label, share in ranked],
           "conf": max(s["conf"] for _, s in candidates), "mean": finest["mean"]}
    return out, first_level
