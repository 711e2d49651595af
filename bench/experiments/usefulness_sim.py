"""Fast stand-in for the in-process evaluator, with sites: rounds, per-address store of 256, per-signer cap,
cosine (or kernel) weights, n_eff >= min_n, level policy max, site failure rate when no level has enough.
An approximation used to pick candidates; the chosen ones are checked with the gateway's Bridge
(usefulness_tuning.py). Tuning split only: seeds 1-3, history rows (0-6,999), scored on rows 3,500-6,999.
    .venv/bin/python bench/experiments/usefulness_sim.py [--half-life]
Figures (2026-12-07; PR-AUC of QIS seeds 1/2/3, site-local seed 1), the table in docs/usefulness.md:
    previous choice (tails 2-98%)           0.655 (seed 1)             site-local 0.421
    chosen (0.5-99.5% tails, wear 4 edges)  0.742 / 0.742 / 0.742      site-local 0.292
    min_n 3                                 0.752 / 0.753 / 0.750      site-local 0.459
    kernel exp(-(1-cos)/0.3)                0.743 / 0.749 / 0.747
Recency (--half-life; the chosen schema, row order as time, one round = one row per site, ~875 rounds of
history per site; half-life H rounds = half_life_s H * ROUND_S on the in-process clock):
    no recency                              0.742 / 0.742 / 0.742 (0.742)  site-local 0.291
    H 25 rounds                             0.541 / 0.555 / 0.566 (0.554)  site-local 0.246
    H 50                                    0.669 / 0.666 / 0.678 (0.671)  site-local 0.299
    H 100                                   0.734 / 0.731 / 0.733 (0.732)  site-local 0.290
    H 250                                   0.739 / 0.738 / 0.738 (0.738)  site-local 0.274
    H 500                                   0.741 / 0.741 / 0.742 (0.741)  site-local 0.292
    H 1000                                  0.742 / 0.742 / 0.742 (0.742)  site-local 0.292
    H 2500                                  0.742 / 0.742 / 0.742 (0.742)  site-local 0.291
No half-life beats no recency (AI4I's failure rules are stationary); a short one thins the pooled evidence:
decayed packets count less towards n_eff, so fewer levels reach min_n (on seed 1's scored failure rows 3.6
of the 5 levels answer at H 25, 4.1 without recency) and the rest answer from fewer effective packets.
The gateway's Bridge agrees at H 100 (usefulness_tuning.py half_life_100_rounds): 0.734 / 0.731 / 0.733.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from qis.schema import Schema
from qis_gateway.usefulness import data, evaluate, scores

ROWS = data.load_rows()
CUT = data.train_cut(len(ROWS))
HISTORY = ROWS[:CUT]
ROUND_S = evaluate.ROUND_S  # simulated seconds per round (the clock the in-process bridges see)


def cap(signers: list[int], share: float = 0.5, min_per: int = 50, budget: int = 200) -> list[int]:
    """Indices (into newest-first list) kept by cap_per_signer."""
    counts: dict[int, int] = defaultdict(int)
    for s in signers:
        counts[s] += 1
    cs = sorted(counts.values())
    best, size, low = 1, 0, 0
    for m in range(1, cs[-1] + 1):
        while cs[low] < m:
            low += 1
        size += len(cs) - low
        if m > 1 and size > budget:
            break
        if m <= max(min_per, share * size):
            best = m
        elif m > min_per:
            break
    seen: dict[int, int] = defaultdict(int)
    out = []
    for i, s in enumerate(signers):
        if seen[s] < best:
            out.append(i)
        seen[s] += 1
    return out[:budget]


def run(schema_spec: dict[str, Any], seed: int, rows: Sequence[data.Row] = HISTORY, sites: int = 8,
        shared: bool = True, min_n: float = 5, kernel: str = "cos", tau: float = 1.0,
        score_from: int | None = None, half_life_rounds: float | None = None) -> float:
    """PR-AUC of the scored rows. half_life_rounds: recency as synthesis applies it (None: no decay), the
    weight times 2 ** (-age / half-life) before the n_eff check; the age is the clock (round k at k * ROUND_S)
    minus the packet's created_s, which the Bridge signs as whole seconds (int(now)), so a packet is up to
    3 rounds older than the rounds since its report, as in the in-process replay."""
    schema = Schema(schema_spec)
    per_site = data.split_sites(list(rows), sites, seed)
    labels = sorted({r.label for r in ROWS})
    none = labels.index(data.NONE)
    fps = {}
    for site_rows in per_site:
        for r in site_rows:
            v = np.asarray(schema.vector(r.reading), dtype=float)
            n = np.linalg.norm(v)
            fps[r.index] = (None, v / n if n else v)
    addrs = {r.index: schema.level_addresses(schema.categorise(r.reading)) for r in rows}
    store: dict[tuple[int, bytes], deque] = defaultdict(lambda: deque(maxlen=256))
    pending: list[tuple[int, int, int]] = []  # (site, row index, created_s)
    p = {}
    seen = [[0, 0] for _ in range(sites)]
    for k in range(max(len(x) for x in per_site)):
        for site, idx, created in pending:
            for a in addrs[idx]:
                store[(0 if shared else site, a)].append((site, idx, created))
        pending = []
        for site in range(sites):
            if k >= len(per_site[site]):
                continue
            r = per_site[site][k]
            q = fps[r.index][1]
            found = []
            for a in addrs[r.index]:
                held = list(store.get((0 if shared else site, a), ()))[::-1]
                if not held:
                    continue
                keep = [held[i] for i in cap([s for s, _, _ in held])]
                idx = [i for _, i, _ in keep]
                V = np.array([fps[i][1] for i in idx])
                c = np.clip(V @ q, 0, 1)
                w = c if kernel == "cos" else np.exp(-(1 - c) / tau)
                if half_life_rounds is not None:
                    age = np.maximum(k * ROUND_S - np.array([t for _, _, t in keep], dtype=float), 0.0)
                    w = w * np.exp2(-age / (half_life_rounds * ROUND_S))
                total = w.sum()
                if total > 0 and total * total / (w @ w) >= min_n - 1e-9:
                    codes = np.array([labels.index(ROWS[i].label) for i in idx])
                    found.append(np.bincount(codes, weights=w, minlength=len(labels)) / total)
            if found:
                best = np.max(found, axis=0)
                best = np.round(best / best.sum() * 1000) / 1000
                p[r.index] = 1 - best[none]
            else:
                f, t = seen[site]
                p[r.index] = (f + 0.5) / (t + 1)
            seen[site][0] += int(r.failed)
            seen[site][1] += 1
            pending.append((site, r.index, math.floor(k * ROUND_S)))
    start = len(rows) // 2 if score_from is None else score_from
    scored = [r for r in rows if r.index >= start]
    y = np.array([r.failed for r in scored])
    s = np.array([p[r.index] for r in scored])
    return round(scores.pr_auc(y, s) or 0.0, 4)


HALF_LIVES = (25, 50, 100, 250, 500, 1000, 2500)  # rounds; the history is ~875 rounds per site


def main(argv: Sequence[str] = ()) -> None:
    """The sweep of 2026-12-07 (figures in the module docstring); `--half-life`: the recency sweep instead."""
    import dataclasses

    from qis_gateway.usefulness.schema_ai4i import DESIGN, build_schema

    old = (0.02, 0.1, 0.5, 0.9, 0.98)
    f3 = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.9975)
    b = dict(DESIGN.bands)
    runs: dict[str, tuple[Any, dict[str, Any]]] = {
        "tails_2_98 (previous choice)": ({**b, "power_w": old, "strain_nm_min": old, "wear_min": (0.5, 0.9)}, {}),
        "chosen": (b, {}),
        "tails 0.25-99.75%": ({**b, "power_w": f3, "strain_nm_min": f3}, {}),
        "wear 50/80/90/93/95/97/99%": ({**b, "wear_min": (0.5, 0.8, 0.9, 0.93, 0.95, 0.97, 0.99)}, {}),
        "dtemp, speed 5/10/20/50%": ({**b, "dtemp_k": (0.05, 0.1, 0.2, 0.5), "speed_rpm": (0.05, 0.1, 0.2, 0.5)}, {}),
        "min_n 3": (b, {"min_n": 3}),
        "min_n 8": (b, {"min_n": 8}),
        "kernel exp(-(1-cos)/0.1)": (b, {"kernel": "exp", "tau": 0.1}),
        "kernel exp(-(1-cos)/0.3)": (b, {"kernel": "exp", "tau": 0.3}),
        "kernel exp(-(1-cos)/1)": (b, {"kernel": "exp", "tau": 1.0}),
    }
    if "--half-life" in argv:  # the chosen schema, recency half-life H rounds (half_life_s = H * ROUND_S)
        runs = {"chosen, no recency": (b, {})}
        runs.update(("half-life %d rounds (%g s)" % (h, h * ROUND_S), (b, {"half_life_rounds": h}))
                    for h in HALF_LIVES)
    for name, (bands, kw) in runs.items():
        spec = build_schema(HISTORY, dataclasses.replace(DESIGN, bands=bands))
        qis = [run(spec, seed, **kw) for seed in (1, 2, 3)]
        local = run(spec, 1, shared=False, **kw)
        print("%-32s QIS %s mean %.3f  site-local (seed 1) %.3f  ratio %.2f"
              % (name, qis, sum(qis) / 3, local, qis[0] / local), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
