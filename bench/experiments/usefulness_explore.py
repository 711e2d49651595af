"""Quick exploration for the AI4I schema and level policy (an approximation, not the gateway's code).

A few hundred lines of numpy standing in for the swarm: rows in file order (all sites pooled), each
predicted from the rows before it. Per level, the bucket's last 256 rows (the swarm's per-address cap)
are weighted by cosine similarity of the schema's quantised vectors (raised to `power`); a level has
enough evidence when Kish's n_eff >= min_n. Policy "first": the finest level with enough evidence answers
(its failure share). Policy "max": every level with enough evidence, each outcome label at its largest
share. Scored on rows 3,500-6,999 (the tuning split's second half, history rows only). It runs a
candidate in seconds, where the gateway's own Bridge (usefulness_tuning.py) takes minutes; the chosen
candidates were then checked with the Bridge.
    .venv/bin/python bench/experiments/usefulness_explore.py
Figures (2026-12-06, from this logic before it was tidied into this file; not rerun since), PR-AUC / ROC-AUC:
    first, nested levels (type,P,S,DT) > (P,S) > (P), no sharpening      0.436 / 0.856 (min_n 3)
    first, same, similarity ** 64                                         0.503 / 0.879
    first, levels (P,S,DT,SP) > (P,S) > (P), similarity ** 16             0.550 / 0.879
    max, exact + views (type,S) (DT,SP) (P) (WE), min_n 3 / 5             0.670 / 0.909, 0.664 / 0.908
    max, same views, similarity ** 16, min_n 3                            0.648 / 0.911
    max, exact + single fields / type + single fields as views            0.483-0.513
    max, exact + all 10 pairs of banded fields as views, min_n 5          0.654 / 0.918
    max, chosen views, uniform band grid (2,10,50,90,98%) for all five    0.600 / 0.895
    max, chosen views, uniform grid (1,3,10,50,90,97,99%)                 0.609 / 0.896
    max, chosen views, quintiles for all five                             0.436 / 0.890
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from qis.schema import quantise
from qis_gateway.usefulness import data, scores

ROWS = data.load_rows()
CUT = data.train_cut(len(ROWS))
HISTORY = ROWS[:CUT]
P, S, DT, SP, WE, TQ = "power_w", "strain_nm_min", "dtemp_k", "speed_rpm", "wear_min", "torque_nm"
VEC6 = (DT, SP, TQ, WE, P, S)
TAILS = (0.02, 0.1, 0.5, 0.9, 0.98)
FINE = (0.01, 0.03, 0.1, 0.5, 0.9, 0.97, 0.99)
CHOSEN_BANDS = {P: TAILS, S: TAILS, DT: (0.1, 0.5), SP: (0.1, 0.5), WE: (0.5, 0.9)}
EXACT = ("type", P, S, DT, SP, WE)
VIEWS = [EXACT, ("type", S), (DT, SP), (P,), (WE,)]


def edges(number: str, quantiles: tuple[float, ...]) -> list[float]:
    values = np.array([r.reading[number] for r in HISTORY])
    out: list[float] = []
    for q in quantiles:
        x = float("%.3g" % np.quantile(values, q))
        if not out or x > out[-1]:
            out.append(x)
    return out


def band(x: float, cuts: list[float]) -> int:
    for i, t in enumerate(cuts):
        if x < t:
            return i
    return len(cuts)


def unit_vectors(numbers: tuple[str, ...]) -> np.ndarray:
    stats = {n: (np.median([r.reading[n] for r in HISTORY]), np.std([r.reading[n] for r in HISTORY]))
             for n in numbers}
    v = np.array([quantise([max(-4.0, min(4.0, (r.reading[n] - stats[n][0]) / stats[n][1])) for n in numbers])
                  for r in ROWS], dtype=float)
    norms = np.linalg.norm(v, axis=1)
    norms[norms == 0] = 1.0
    return v / norms[:, None]


def evaluate(bands: dict[str, tuple[float, ...]], levels: list[tuple[str, ...]], policy: str = "max",
             min_n: float = 5, power: float = 1.0, cap: int = 256) -> tuple[float, float]:
    cuts = {k: edges(k, q) for k, q in bands.items()}
    vectors = unit_vectors(VEC6)
    labels = sorted({r.label for r in ROWS} - {data.NONE})
    code = np.array([labels.index(r.label) if r.label != data.NONE else -1 for r in ROWS])
    keys = [{"type": r.reading["type"], **{k: band(r.reading[k], c) for k, c in cuts.items()}} for r in ROWS]
    cells: list[dict[tuple, list[int]]] = [defaultdict(list) for _ in levels]
    p = np.zeros(CUT)
    for i in range(CUT):
        found = []
        for level, fields in enumerate(levels):
            idx = cells[level][tuple(keys[i][f] for f in fields)][-cap:]
            if idx:
                w = np.clip(vectors[idx] @ vectors[i], 0, 1) ** power
                total = w.sum()
                if total > 0 and total * total / (w @ w) >= min_n:
                    found.append(np.array([w[code[idx] == j].sum() for j in range(len(labels))]) / total)
                    if policy == "first":
                        break
        p[i] = min(1.0, np.max(found, axis=0).sum()) if found else 0.03
        for level, fields in enumerate(levels):
            cells[level][tuple(keys[i][f] for f in fields)].append(i)
    y = np.array([r.failed for r in HISTORY])[CUT // 2:]
    s = p[CUT // 2:]
    return round(scores.pr_auc(y, s) or 0.0, 4), round(scores.roc_auc(y, s) or 0.0, 4)


def main() -> None:
    fields = [P, S, DT, SP, WE]
    runs = {
        "first nested": (CHOSEN_BANDS, [EXACT, ("type", P, S, DT), (P, S), (P,)], "first", 3, 1.0),
        "first nested sim**64": (CHOSEN_BANDS, [EXACT, ("type", P, S, DT), (P, S), (P,)], "first", 3, 64.0),
        "max views min_n 3": (CHOSEN_BANDS, VIEWS, "max", 3, 1.0),
        "max views min_n 5": (CHOSEN_BANDS, VIEWS, "max", 5, 1.0),
        "max views sim**16": (CHOSEN_BANDS, VIEWS, "max", 3, 16.0),
        "max all pairs": (CHOSEN_BANDS, [EXACT] + [(a, b) for i, a in enumerate(fields) for b in fields[i + 1:]],
                          "max", 5, 1.0),
        "max uniform tails": ({f: TAILS for f in fields}, VIEWS, "max", 5, 1.0),
        "max uniform fine": ({f: FINE for f in fields}, VIEWS, "max", 5, 1.0),
    }
    for name, (bands, levels, policy, min_n, power) in runs.items():
        print(name, evaluate(bands, levels, policy, min_n, power), flush=True)


if __name__ == "__main__":
    main()
