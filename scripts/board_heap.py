"""Find the smallest MicroPython heap the board loop runs in (the RAM figures of docs/device.md).

    .venv/bin/python scripts/board_heap.py SCENARIO [--interpreter PATH] [--start 48] [--stop 12]
                                          [--step 1] [--runs 1] [--readings N] [--tls rsa|ec]

Runs the real board code (shared/qis + device/qis_device compiled to .mpy with mpy-cross -O3, as
`qis-device deploy` ships it; or frozen in, when the interpreter is a build with the board code frozen
in: scripts/build-micropython32.sh makes both) under `-X heapsize=<start>K`, <start - step>K, ...
against a local Mosquitto and a responder playing the gateway, and stops at the first heap where a run
fails. Each heap is run --runs times; one failure fails the heap. Prints one line per run and, last,
`minimum <n>K` (the smallest heap of the passing run from the top).

Scenarios and what "passes" means:
  soak     --readings (default 1000) readings: every one answered, no MemoryError, free heap after gc
           (sampled every readings/20) not trending down (mean of the last 5 samples >= mean of samples
           2-6 minus 256 bytes)
  connect  connect (plain MQTT, or TLS with --tls: a self-signed RSA-2048 or EC P-256 server
           certificate, the board's default unverified context) and 3 readings answered, no MemoryError:
           the connection set-up is the heap's peak, so this is the peak a board must have room for
  outage   the store-and-forward test: 60 readings 0.1 s apart with an outcome reported for every
           summary; the broker stops for 3 s after the 10th; every reading must arrive, in order, and
           every missing answer be counted (mem_drops/missed), as tests/device asserts. The line shows
           mem_errors and mem_drops: "lossless" when no answer was dropped for want of heap ("missed"
           answers overflowed the board's 4-deep inbox in the burst after the outage, at any heap).
Needs Mosquitto (/usr/sbin/mosquitto) and, for --tls, openssl. Uses the test suite's helpers
(tests/device/devsupport.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "device")]

import devsupport as ds  # noqa: E402
from qis_firmware import emulate  # noqa: E402
from support.broker import start_broker  # noqa: E402

OUTCOME_SCRIPT = """
import sys
import qis_device
def on_summary(summary, device):
    qis_device.report_outcome("ok", 1.0, None, summary["re"])
sys.exit(qis_device.main(%r, %d, None, on_summary))
"""


def heap_samples(out: str) -> list[int]:
    return [int(line.split()[2]) for line in out.splitlines() if line.startswith("QIS-HEAP ")]


def finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return -9, out + err
    return proc.returncode, out + err


def run_soak(work: Path, code: Path, heap: str, readings: int) -> tuple[bool, dict]:
    with start_broker(work / "broker") as broker:
        responder = ds.Responder(broker.host, broker.port)
        try:
            cfg = ds.board_config(work / "board", broker.port, heap_log_every=max(1, readings // 20))
            rc, out = finish(ds.spawn_board(cfg, code, readings, heap), 60 + readings * 0.5)
        finally:
            responder.close()
    if rc != 0 or "QIS-STATS" not in out:
        return False, {"rc": rc, "tail": out[-300:]}
    st = ds.stats(out)
    free = heap_samples(out)
    flat = len(free) >= 7 and sum(free[-5:]) / 5 >= sum(free[1:6]) / 5 - 256
    ok = st["readings"] == st["summaries"] == readings and st["mem_errors"] == 0 and flat
    return ok, {"mem_errors": st["mem_errors"], "summaries": st["summaries"], "free_min": min(free or [0]),
                "free_first": free[:2], "free_last": free[-2:]}


def run_connect(work: Path, code: Path, heap: str, tls: str | None) -> tuple[bool, dict]:
    with ds.TlsBroker.start_in(work / "broker", ds.make_cert(work / "tls", tls) if tls else None) as broker:
        responder = ds.Responder(broker.host, broker.port)
        try:
            port = broker.tls_port if tls else broker.port
            cfg = ds.board_config(work / "board", port, broker={"tls": bool(tls)}, summary_timeout_s=5)
            rc, out = finish(ds.spawn_board(cfg, code, 3, heap), 60)
        finally:
            responder.close()
    if rc != 0 or "QIS-STATS" not in out:
        return False, {"rc": rc, "tail": out[-300:]}
    st = ds.stats(out)
    ok = st["summaries"] == 3 and st["mem_errors"] == 0 and st["connects"] >= 1
    return ok, {"mem_errors": st["mem_errors"], "summaries": st["summaries"], "connects": st["connects"]}


def run_outage(work: Path, code: Path, heap: str) -> tuple[bool, dict]:
    with start_broker(work / "broker", require_mosquitto=True) as broker:
        responder = ds.Responder(broker.host, broker.port, clean_session=False)
        try:
            cfg = ds.board_config(work / "board", broker.port, interval_s=0.1, summary_timeout_s=0.3,
                                  mqtt_timeout_s=1)
            proc = ds.spawn_script(OUTCOME_SCRIPT % (str(cfg), 60), code, heap, cfg.parent)
            if not responder.wait_for(lambda: len(responder.seqs()) >= 10, 30):
                proc.kill()
                rc, out = finish(proc, 10)
                return False, {"rc": rc, "tail": out[-300:]}
            broker.stop()
            time.sleep(3)
            broker.start()
            rc, out = finish(proc, 90)
            responder.wait_for(lambda: len(set(responder.seqs())) == 60, 20)
            fps = ds.first_arrivals(responder.seqs())
        finally:
            responder.close()
    if rc != 0 or "QIS-STATS" not in out:
        return False, {"rc": rc, "tail": out[-300:]}
    st = ds.stats(out)
    counted = st["summaries"] <= 60 <= st["summaries"] + st["mem_drops"]
    ok = len(fps) == 60 and fps == sorted(fps) and counted and st["dropped"] == 0 and st["queued"] == 0
    # "missed": more answers at once than the 4-deep inbox holds (a policy, at any heap); "mem_drops":
    # answers dropped for want of heap. lossless = none of the latter.
    return ok, {k: st[k] for k in ("summaries", "missed", "outcomes", "mem_errors", "mem_drops", "connects")} | {
        "lossless": st["mem_drops"] == 0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=("soak", "connect", "outage"))
    p.add_argument("--interpreter", default=None, help="micropython binary (default: the venv's 64-bit one)")
    p.add_argument("--start", type=int, default=48, help="first heap in K")
    p.add_argument("--stop", type=int, default=12, help="lowest heap in K to try")
    p.add_argument("--step", type=int, default=1, help="K between tries")
    p.add_argument("--runs", type=int, default=1, help="runs per heap (all must pass)")
    p.add_argument("--readings", type=int, default=1000, help="soak: readings per run")
    p.add_argument("--tls", choices=("rsa", "ec"), default=None, help="connect: over TLS")
    args = p.parse_args(argv)
    if args.interpreter:
        exe = shutil.which(args.interpreter) or args.interpreter
        if not Path(exe).is_file():
            print("board_heap: --interpreter %s not found" % args.interpreter, file=sys.stderr)
            return 2
        emulate.micropython_executable = lambda: exe  # type: ignore[assignment]
    if args.start < args.stop or args.step < 1 or args.runs < 1:
        print("board_heap: need --start >= --stop, --step >= 1, --runs >= 1", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="qh"))
    try:
        code = ds.code_dir(root)  # short path: module paths are interned qstrs, as on a board's /lib
        minimum = None
        for k in range(args.start, args.stop - 1, -args.step):
            heap = "%dK" % k
            passed = True
            for run in range(args.runs):
                work = root / ("%s-%d" % (heap, run))
                if args.scenario == "soak":
                    ok, info = run_soak(work, code, heap, args.readings)
                elif args.scenario == "connect":
                    ok, info = run_connect(work, code, heap, args.tls)
                else:
                    ok, info = run_outage(work, code, heap)
                print("%s run %d %s %s" % (heap, run + 1, "pass" if ok else "FAIL", json.dumps(info)), flush=True)
                passed = passed and ok
                if not ok:
                    break
            if not passed:
                break
            minimum = k
        print("minimum %s" % ("%dK" % minimum if minimum is not None else "none (the first heap failed)"))
        return 0 if minimum is not None else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
