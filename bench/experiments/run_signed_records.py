"""Experiment, not product code: how fast could the 100,000-node simulation join with transferable (signed)
node records instead of one id-proof round trip per routing-table entry? (issue 4, "under 5 minutes")

How it works: exports the gateway package as of ``BASE`` (the commit the patch was made against; the refresh
changed after it) into a temporary folder with ``git archive``, applies ``signed_records.patch`` there (the
checkout is never changed) and runs the simulator on the patched copy. The patch stands in for signed
records without a wire format: every contact in a NODES / VALUES answer enters the table while its bucket
has room, and a requester is added at once (as if its request carried its record). Knobs (environment, read
by the patch): STRATA=0 refreshes a bucket with one FIND_NODE instead of one per quarter, NOPING=1 drops the
refresh PINGs, RECORD=1 sizes answers for ~119-byte records (9 contacts per 1,400-byte answer instead of
20). Writes bench/results/sim_signed_records_<nodes>.json.

    .venv/bin/python bench/experiments/run_signed_records.py --nodes 10000 [--strata 0] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATCH = Path(__file__).with_name("signed_records.patch")
BASE = "b464f2f"  # the gateway/ tree the patch applies to (the results in bench/results were measured on it)
RUN = """
import json, sys
from qis_gateway.swarm import sim
cfg = sim.config_with(join_refresh_buckets=256)
r = sim.run_simulation(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), config=cfg)
keep = ("nodes", "success_rate", "hops", "messages", "join_messages_per_node", "table_size", "seconds_join",
        "seconds", "delivered_messages", "wall_us_per_delivered", "max_rss_mb")
print(json.dumps({k: r[k] for k in keep}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strata", type=int, default=0, help="refresh strata bits (0 = one FIND_NODE per bucket)")
    ap.add_argument("--record", action="store_true", help="size answers for signed records (9 per answer)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qis-records-") as tmp:
        tree = subprocess.run(["git", "-C", str(ROOT), "archive", BASE, "gateway"], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "x"], input=tree, cwd=tmp, check=True)
        subprocess.run(["git", "apply", str(PATCH)], cwd=tmp, check=True)
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "gateway"), STRATA=str(args.strata), NOPING="1",
                   RECORD="1" if args.record else "0")
        out = subprocess.run([sys.executable, "-c", RUN, str(args.nodes), str(args.lookups), str(args.seed)],
                             env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["experiment"] = {"strata_bits": args.strata, "record_sized_answers": args.record,
                            "command": " ".join(["bench/experiments/run_signed_records.py", *sys.argv[1:]])}
    print(json.dumps(result, indent=2))
    name = "sim_signed_records_%d%s.json" % (args.nodes, "_record" if args.record else "")
    (ROOT / "bench" / "results" / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
