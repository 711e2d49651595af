"""Tuning sweep for the AI4I usefulness replay (docs/usefulness.md), in-process (evaluate.py).

Tuning split: seeds 1-3, history rows only (the first 70% of the file), scored on its second half
(rows 3,500-6,999). The scored rows of the report (the last 30%) are never replayed here. Each candidate
is a schema design (bands cut at the history's quantiles) plus synthesis settings; prints one JSON line
per candidate with its mean PR-AUC over the three seeds, and writes them all to
bench/results/usefulness_tuning.json.
    .venv/bin/python bench/experiments/usefulness_tuning.py [NAME ...]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from qis.schema import Schema
from qis_gateway.config import SynthesisSettings
from qis_gateway.usefulness import data, evaluate, judge
from qis_gateway.usefulness.schema_ai4i import DESIGN, Design, build_schema

TUNING_SEEDS = (1, 2, 3)
SITES = 8
Q5 = (0.2, 0.4, 0.6, 0.8)
Q10 = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TAILS = (0.02, 0.1, 0.5, 0.9, 0.98)
FINE_TAILS = (0.01, 0.03, 0.1, 0.5, 0.9, 0.97, 0.99)
VEC6 = ("dtemp_k", "speed_rpm", "torque_nm", "wear_min", "power_w", "strain_nm_min")
BASE = SynthesisSettings(min_n=5, top=10, level_policy="max")


def design(bands: dict[str, tuple[float, ...]], coarser: tuple[tuple[str, ...], ...], vector: tuple[str, ...] = VEC6,
           with_type: bool = True) -> Design:
    return Design(bands=bands, vector=vector, coarser=coarser, with_type=with_type)


CANDIDATES: dict[str, tuple[Design, SynthesisSettings, bool]] = {}


def add(name: str, d: Design, s: SynthesisSettings = BASE, shared: bool = True) -> None:
    """shared=False: site-local (a swarm per site), the same code."""
    CANDIDATES[name] = (d, s, shared)


FIELDS = ("power_band", "strain_band", "dtemp_band", "speed_band", "wear_band")
add("chosen", DESIGN)  # views: (type, strain), (dtemp, speed), (power), (wear); level_policy max, min_n 5
add("chosen_site_local", DESIGN, shared=False)
# the previous choice: the same views with power and strain cut at 2/10/50/90/98% and wear at 50/90%
add("tails_2_98", dataclasses.replace(DESIGN, bands={**DESIGN.bands, "power_w": TAILS, "strain_nm_min": TAILS,
                                                     "wear_min": (0.5, 0.9)}))
add("tails_2_98_first", CANDIDATES["tails_2_98"][0], dataclasses.replace(BASE, level_policy="first"))
add("chosen_first", DESIGN, dataclasses.replace(BASE, level_policy="first"))  # the default fallback rule
add("chosen_min_n3", DESIGN, dataclasses.replace(BASE, min_n=3))
add("chosen_min_n8", DESIGN, dataclasses.replace(BASE, min_n=8))
add("nested_first", dataclasses.replace(DESIGN, coarser=(("type", "power_band", "strain_band", "dtemp_band"),
                                                         ("power_band", "strain_band"), ("power_band",))),
    dataclasses.replace(BASE, level_policy="first"))
add("all_pairs", dataclasses.replace(DESIGN, coarser=tuple((a, b) for i, a in enumerate(FIELDS)
                                                           for b in FIELDS[i + 1:])))
add("fine_tails", dataclasses.replace(DESIGN, bands={**DESIGN.bands, "power_w": FINE_TAILS,
                                                     "strain_nm_min": FINE_TAILS}))
# recency: a half-life of H rounds is H * evaluate.ROUND_S simulated seconds (usefulness_sim.py --half-life)
add("half_life_100_rounds", DESIGN, dataclasses.replace(BASE, half_life_s=100 * evaluate.ROUND_S))


def run(name: str, d: Design, settings: SynthesisSettings, shared: bool = True) -> dict[str, object]:
    rows = data.load_rows()
    history = rows[:data.train_cut(len(rows))]
    schema = Schema(build_schema(history, d))
    scored_from = len(history) // 2
    per_seed = []
    for seed in TUNING_SEEDS:
        preds, _ = evaluate.replay_in_process(data.split_sites(history, SITES, seed), schema, settings,
                                              shared=shared)
        probs = judge.probabilities((p.row, p.site, p.summary) for p in preds)
        s = judge.score_rows([r for r in history if r.index >= scored_from], probs)
        per_seed.append(s["pr_auc"])
    mean = sum(per_seed) / len(per_seed)
    return {"name": name, "pr_auc_mean": round(mean, 4), "pr_auc_per_seed": per_seed,
            "shared": shared, "settings": dataclasses.asdict(settings), "design": dataclasses.asdict(d)}


def main(names: list[str]) -> int:
    out_path = Path(__file__).resolve().parents[1] / "results" / "usefulness_tuning.json"
    done = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name, (d, s, shared) in CANDIDATES.items():
        if names and name not in names:
            continue
        started = time.monotonic()
        result = run(name, d, s, shared)
        result["seconds"] = round(time.monotonic() - started, 1)
        done[name] = result
        print(json.dumps({k: result[k] for k in ("name", "pr_auc_mean", "pr_auc_per_seed", "seconds")}), flush=True)
        out_path.write_text(json.dumps(done, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
