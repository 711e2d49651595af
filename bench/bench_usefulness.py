"""Issue 16: do routed outcomes predict failures on real data? AI4I 2020 through the real system.

For each held-out seed (4, 5, 6: the tuning used seeds 1-3 on the history rows only, see
bench/experiments/usefulness_tuning.py) all 10,000 rows are replayed over 8 sites through 8 real
gateways, 8 emulated boards and the real MQTT path (qis_gateway.usefulness.run), and scored on the last
30% of the file: QIS (real path), site-local (same Bridge code, a swarm per site), central (scikit-learn
HistGradientBoostingClassifier on the pooled raw rows, trained on the first 70%) and the base rate. Seed 4
also replays QIS in-process to show the evaluator agrees with the real path. Writes
bench/results/usefulness.json and usefulness.png (precision-recall curves of seed 4, PR-AUC over time).
    .venv/bin/python bench/bench_usefulness.py [--seeds 4 5 6] [--sites 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from qis_gateway.usefulness.data import load_rows
from qis_gateway.usefulness.run import usefulness

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("qis", "site_local", "central", "base_rate")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        per = [r[key] for r in runs if r.get(key, {}).get("pr_auc") is not None]
        if not per:
            continue
        out[key] = {metric: round(statistics.mean(p[metric] for p in per), 4)
                    for metric in ("pr_auc", "roc_auc", "recall_at_90_precision")}
        out[key]["pr_auc_per_seed"] = [p["pr_auc"] for p in per]
        out[key]["mode_recall_at_90_precision"] = {}
        for mode in per[0]["mode_recall_at_90_precision"]:
            values = [p["mode_recall_at_90_precision"][mode] for p in per]
            known = [v for v in values if v is not None]  # None: the scored rows hold no failure of that mode
            out[key]["mode_recall_at_90_precision"][mode] = round(statistics.mean(known), 4) if known else None
    if "qis" in out and "site_local" in out:
        out["qis_over_site_local"] = round(out["qis"]["pr_auc"] / out["site_local"]["pr_auc"], 2)
    out["lost"] = sum(r["lost"] for r in runs)
    out["replay_s"] = [r["real_path"]["replay_s"] for r in runs]
    return out


def plot(run: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = {"qis": "QIS (real path)", "site_local": "site-local", "central": "central (pooled raw data)"}
    for key, name in names.items():
        curve = run.get(key, {}).get("pr_curve")
        if curve:
            left.step(curve["recall"], curve["precision"], where="post",
                      label="%s, PR-AUC %.2f" % (name, run[key]["pr_auc"]))
    left.axhline(run["base_rate"]["rate"], color="grey", linestyle=":",
                 label="base rate %.3f" % run["base_rate"]["rate"])
    left.set_xlabel("recall")
    left.set_ylabel("precision")
    left.set_title("P(failure), last 30%% of rows, seed %d" % run["seed"])
    left.legend(fontsize=8)
    for key in ("qis", "site_local"):
        points = run[key]["over_time"]
        right.plot([(p["first_row"] + p["last_row"]) / 2 for p in points], [p["pr_auc"] or 0 for p in points],
                   marker="o", label=names[key])
    right.set_xlabel("row (time)")
    right.set_ylabel("PR-AUC per 1,000 rows")
    right.set_title("as the swarm learns")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def central_only() -> int:
    """The central model depends on neither the seed nor the replay: refit it into an existing result."""
    from qis_gateway.usefulness import central, judge
    from qis_gateway.usefulness.data import train_cut

    path = RESULTS / "usefulness.json"
    result = json.loads(path.read_text())
    rows = load_rows()
    cut = train_cut(len(rows))
    probs = central.central_probabilities(rows[:cut], rows[cut:])
    raw = central.central_probabilities(rows[:cut], rows[cut:], derived=False)
    if probs is None or raw is None:
        print("scikit-learn is not installed (pip install 'qis-edge[bench]')", file=sys.stderr)
        return 1
    for run in result["runs"]:
        run["central"] = {"available": True, **judge.score_rows(rows[cut:], probs, curve=True)}
        run["central_raw_columns"] = judge.score_rows(rows[cut:], raw)
    result["summary"] = summarise(result["runs"])
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result["runs"][0], RESULTS / "usefulness.png")
    print(json.dumps(result["summary"]))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--central-only", action="store_true",
                        help="recompute only the central model's entries of an existing usefulness.json")
    args = parser.parse_args(argv)
    if args.central_only:
        return central_only()
    rows = load_rows()
    runs = []
    for i, seed in enumerate(args.seeds):
        started = time.monotonic()
        run = usefulness(rows, args.sites, seed, agreement=(i == 0))
        run["seconds_total"] = round(time.monotonic() - started, 1)
        runs.append(run)
        print(json.dumps({"seed": seed, **{k: run[k].get("pr_auc") for k in KEYS}, "lost": run["lost"],
                          "replay_s": run["real_path"]["replay_s"]}), flush=True)
    result = {"benchmark": "usefulness", "dataset": "AI4I 2020 (UCI 601, CC BY 4.0)", "sites": args.sites,
              "seeds": args.seeds, "summary": summarise(runs), "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "usefulness.json").write_text(json.dumps(result, indent=1) + "\n")
    try:
        plot(runs[0], RESULTS / "usefulness.png")
    except ImportError:
        print("matplotlib is not installed (pip install 'qis-edge[bench]'): no plot", file=sys.stderr)
    print(json.dumps(result["summary"]))
    return 0 if result["summary"]["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
