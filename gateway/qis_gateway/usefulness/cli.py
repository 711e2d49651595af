"""`qis-demo --dataset ai4i`: do routed outcomes predict failures on a public benchmark?

Replays the AI4I 2020 rows through the real system (one gateway per site, one emulated board per site,
see replay.py), scores every summary as a prediction taken before the row's outcome was reported, and
compares with site-local learning, a central model on pooled raw data and the base rate (run.py).
A refreshing line shows rows answered, lost and the running scores; --json prints one object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from qis_gateway.usefulness import judge
from qis_gateway.usefulness.data import load_rows, train_cut
from qis_gateway.usefulness.replay import ReplaySystem
from qis_gateway.usefulness.run import usefulness
from qis_gateway.usefulness.scores import pr_auc, roc_auc

MAX_SITES = 64


def live_line(system: ReplaySystem, elapsed_s: float) -> str:
    """Rows answered so far, lost so far and the running QIS scores (over every row answered yet)."""
    results = system.site_results()
    ordered = []
    for site, result in enumerate(results):
        done = [(row, s) for row, s, _ in zip(result.rows, result.summaries, result.labels_reported,
                                               strict=False)]
        ordered += [(row, site, s or {}) for row, s in done]
    sent = sum(len(r.summaries) for r in results)
    answered = sum(1 for r in results for s in r.summaries if s is not None)
    total = sum(len(r) for r in system.sites_rows)
    probs = judge.probabilities(ordered)
    y = np.array([row.failed for row, _, _ in ordered], dtype=np.int8)
    s = np.array([probs[row.index]["failure"] for row, _, _ in ordered])
    pr, roc = (pr_auc(y, s), roc_auc(y, s)) if len(y) else (None, None)
    return "%5.0fs  rows %5d/%d  answered %5d  waiting %3d  failures %3d  PR-AUC %s  ROC-AUC %s" % (
        elapsed_s, sent, total, answered, sent - answered, int(y.sum()), _fmt(pr), _fmt(roc))


def _fmt(x: float | None) -> str:
    return "-" if x is None else "%.3f" % x


def table(out: dict[str, Any]) -> str:
    lines = ["%-12s %7s %8s %14s  %s" % ("", "PR-AUC", "ROC-AUC", "recall@90%prec", "per mode recall@90%prec")]
    for key in ("qis", "site_local", "central", "base_rate"):
        s = out.get(key, {})
        if key == "central" and not s.get("available", False):
            lines.append("%-12s %s" % (key, s.get("note", "not available")))
            continue
        modes = " ".join("%s %s" % (m, _fmt(v)) for m, v in s.get("mode_recall_at_90_precision", {}).items())
        lines.append("%-12s %7s %8s %14s  %s" % (key, _fmt(s.get("pr_auc")), _fmt(s.get("roc_auc")),
                                                 _fmt(s.get("recall_at_90_precision")), modes))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qis-demo --dataset ai4i", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=("ai4i",), help="the public data set to replay")
    parser.add_argument("--sites", type=int, default=8, help="sites, one gateway and board each (default 8)")
    parser.add_argument("--seed", type=int, default=4, help="seed of the rows' draw over sites (default 4)")
    parser.add_argument("--rows", type=int, default=0, help="replay only the first N rows (default all)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = parser.parse_args(argv)
    if not 1 <= args.sites <= MAX_SITES:
        parser.error("--sites must be in 1..%d" % MAX_SITES)
    rows = load_rows()
    if args.rows:
        if not 20 <= args.rows <= len(rows):
            parser.error("--rows must be in 20..%d" % len(rows))
        rows = rows[:args.rows]
    out: TextIO = sys.stderr if args.json else sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="qis-ai4i-"))
    tty = out.isatty()
    ticks = [0]

    def tick(system: ReplaySystem, elapsed_s: float) -> None:
        if tty:
            print("\r" + live_line(system, elapsed_s), end="", file=out, flush=True)
        elif ticks[0] % 10 == 0:
            print(live_line(system, elapsed_s), file=out, flush=True)
        ticks[0] += 1

    print("qis-demo --dataset ai4i: %d rows over %d sites (seed %d), one gateway and one emulated board per site; "
          "scored on rows %d.. (the last 30%%)" % (len(rows), args.sites, args.seed, train_cut(len(rows))), file=out)
    print("work directory: %s" % workdir, file=out)
    started = time.monotonic()
    try:
        result = usefulness(rows, args.sites, args.seed, workdir=workdir, tick=tick, curves=False)
    except KeyboardInterrupt:
        print("\nqis-demo: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["seconds_total"] = round(time.monotonic() - started, 1)
    real = result["real_path"]
    print(("\n" if tty else "") + "replay: %d readings, %d answered, lost %d, %d outcome packets stored, "
          "%.0f s through the real path" % (real["readings"], real["answered"], result["lost"],
                                            real["outcome_packets_stored"], real["replay_s"]), file=out)
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
    ok = result["lost"] == 0 and real["board_exit_codes_ok"] and real["outcomes_match_rows"]
    if not ok:
        print("qis-demo: some readings went unanswered or a board failed", file=sys.stderr)
    return 0 if ok else 1
