"""`make bench`: run every bench/bench_*.py in turn; each writes its JSON to bench/results/.

Runs them as separate processes (a crashed or slow benchmark does not take the others down), prints
progress and a one-line summary per benchmark, and exits non-zero if any failed.
    .venv/bin/python bench/run_all.py [NAME ...]   # e.g. synthesis swarm
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    if not scripts:
        print("no benchmarks matched %s" % argv, file=sys.stderr)
        return 2
    (HERE / "results").mkdir(exist_ok=True)
    failed = []
    for i, script in enumerate(scripts, start=1):
        print("[%d/%d] %s ..." % (i, len(scripts), script.name), flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        took = time.monotonic() - started
        status = "ok" if proc.returncode == 0 else "FAILED (exit %d)" % proc.returncode
        print("[%d/%d] %s %s in %.1f s" % (i, len(scripts), script.name, status, took), flush=True)
        if proc.returncode != 0:
            failed.append(script.name)
    print("results in %s" % (HERE / "results"))
    if failed:
        print("failed: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
