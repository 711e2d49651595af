"""`qis-demo` (what `make demo` runs): the whole system on this machine, on the embedded defaults.

A swarm of gateways (real `qis-gateway run` processes, each a site with its own MQTT broker, all in one
Kademlia swarm over UDP on 127.0.0.1) and emulated boards (the real device code under the MicroPython
unix port at a small heap) at two sites. Boards read simulated machines, publish fingerprints, get
summaries back and, after each reading, report what happened (the simulated ground truth: vibration
zone C -> bearing_wear, D -> bearing_failure, else normal). Outcomes become signed packets in the
swarm, so summaries sharpen as the swarm learns: the table shows how often a summary's top outcome is
the true one, early versus late. Ctrl-C stops everything; nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qis_firmware import tools
from qis_firmware.errors import MissingTool

from qis_gateway import cliopts
from qis_gateway.harness.system import DEFAULT_HEAP, SIM_OUTCOMES, LocalSystem, SystemSpec

log = logging.getLogger("qis_gateway.demo")

# A reading counts as pending (in flight) this long after the observer saw it, then as lost if still unanswered.
IN_FLIGHT_S = 10.0
# What the demo runs on besides Python packages: the boards' MicroPython unix port, mpy-cross, a broker.
NEEDED_TOOLS = ("micropython", "mpy-cross", "broker")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def truth(fields: dict[str, Any] | None) -> str | None:
    if not fields:
        return None
    return SIM_OUTCOMES["labels"].get(fields.get(SIM_OUTCOMES["field"]), "observed")


def figures(system: LocalSystem, now: float | None = None, final: bool = False) -> dict[str, Any]:
    """The run's figures so far. A reading without a summary is `pending` while it is younger than
    IN_FLIGHT_S (its answer may still come), then `lost`; `final=True` counts every unanswered one lost."""
    now = time.perf_counter() if now is None else now  # the observers' clock
    readings = summaries = outcomes = pending = lost = 0
    hops: list[int] = []
    judged: list[tuple[float, bool, bool]] = []  # (arrival, enough, top is the truth)
    for obs in system.observers.values():
        for board, entry in obs.snapshot().items():
            if not any(b.site == board[0] and b.device == board[1] for b in system.boards):
                continue
            sent: dict[int, float] = {}
            for seq, t in entry.fp:
                sent.setdefault(seq, t)
            readings += len(sent)
            outcomes += len({o[0] for o in entry.outcomes})
            answered = {body.get("re") for body, _ in entry.summaries}
            for seq, t in sent.items():
                if seq not in answered:
                    if not final and now - t < IN_FLIGHT_S:
                        pending += 1
                    else:
                        lost += 1
            seen = set()
            for body, t in entry.summaries:
                re = body.get("re")
                if re in seen:
                    continue
                seen.add(re)
                hops.append(int(body.get("hops", 0)))
                top = body.get("top") or []
                judged.append((t, bool(body.get("enough")), bool(top) and top[0][0] == truth(entry.fields.get(re))))
            summaries += len(seen)
    latencies = [ms for obs in system.observers.values() for ms in obs.latencies_ms()]
    judged.sort()
    third = max(1, len(judged) // 3)
    early, late = judged[:third], judged[-third:]

    def right(part: list[tuple[float, bool, bool]]) -> float | None:
        return round(sum(ok for _, _, ok in part) / len(part), 3) if part else None

    stored = rejected = 0.0
    for gw in system.gateways:
        if system.procs.alive(gw.name):
            try:
                samples = system.gateway_metrics(gw.index)
            except OSError:
                continue
            stored += sum(v for k, v in samples.items() if k.startswith("qis_gateway_packets_stored_total"))
            rejected += sum(v for k, v in samples.items() if k.startswith("qis_gateway_rejections_total"))
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "gateways": len(system.gateways), "boards": len(system.boards),
        "readings_sent": readings, "summaries_received": summaries, "pending": pending, "lost": lost,
        "outcomes_reported": outcomes, "outcomes_stored": int(stored),
        "p50_ms": round(p50, 1) if p50 is not None else None, "p99_ms": round(p99, 1) if p99 is not None else None,
        "hops_p50": statistics.median(hops) if hops else None, "rejected": int(rejected),
        "enough_share": round(sum(e for _, e, _ in judged) / len(judged), 3) if judged else None,
        "top_right_early": right(early), "top_right_late": right(late),
    }


def render(f: dict[str, Any], elapsed_s: float, final: bool = False) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    line = ("%5.0fs  readings %4d  summaries %4d  pending %3d  lost %3d  outcomes stored %5d  p50 %6s ms  "
            "p99 %6s ms  hops %3s  rejected %d  top=truth %s -> %s" % (
                elapsed_s, f["readings_sent"], f["summaries_received"], f["pending"], f["lost"], f["outcomes_stored"],
                fmt(f["p50_ms"]), fmt(f["p99_ms"]), fmt(f["hops_p50"]), f["rejected"], fmt(f["top_right_early"]),
                fmt(f["top_right_late"])))
    return line if final else "\r" + line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qis-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=8, help="swarm size (default 8)")
    parser.add_argument("--sites", type=int, default=2, help="gateways that have boards (default 2)")
    parser.add_argument("--boards", type=int, default=6, help="emulated boards (default 6)")
    parser.add_argument("--readings", type=int, default=30, help="readings per board, one a second (default 30)")
    parser.add_argument("--heap", default=DEFAULT_HEAP,
                        help="MicroPython heap of each emulated board (default %s)" % DEFAULT_HEAP)
    parser.add_argument("--backend", default="kademlia", choices=("kademlia", "opendht"), help="swarm engine")
    parser.add_argument("--min-n", type=int, default=3, help="packets a summary needs (default 3)")
    parser.add_argument("--dataset", choices=("ai4i",),
                        help="replay a public data set instead (qis-demo --dataset ai4i --help: its options)")
    parser.add_argument("--json", action="store_true", help="print the final figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    cliopts.add_common_options(parser, "qis-demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if any(a == "--dataset" or a.startswith("--dataset=") for a in args_in):
        from qis_gateway.usefulness.cli import main as dataset_main  # a public data set replayed instead

        return dataset_main(args_in)
    parser = build_parser()
    args = parser.parse_args(argv)
    cliopts.configure_logging(parser, args, logging.WARNING)
    if args.gateways < 1 or args.boards < 1 or args.readings < 1 or not 1 <= args.sites <= args.gateways:
        parser.error("need gateways >= 1, boards >= 1, readings >= 1 and 1 <= sites <= gateways")
    try:
        tools.require(NEEDED_TOOLS, "the demo")
    except MissingTool as exc:
        print("qis-demo: error: %s" % exc, file=sys.stderr)
        return exc.exit_code

    workdir = Path(tempfile.mkdtemp(prefix="qis-demo-"))
    spec = SystemSpec(gateways=args.gateways, sites=args.sites, boards=args.boards, readings=args.readings,
                      heap=args.heap, backend=args.backend, min_n=args.min_n)
    system = LocalSystem(spec, workdir)
    started = time.monotonic()
    out = sys.stderr if args.json else sys.stdout
    try:
        print("qis-demo: %d gateways (%s swarm), %d emulated boards at %d sites, %d readings each, heap %s" % (
            args.gateways, args.backend, args.boards, args.sites, args.readings, args.heap), file=out)
        print("work directory: %s" % workdir, file=out)
        system.start()
        print("swarm up in %.1f s; boards starting" % (time.monotonic() - started), file=out)
        system.start_boards()
        deadline = time.monotonic() + args.readings * (spec.interval_s + spec.summary_timeout_s) + 120
        tty = out.isatty()
        ticks = 0
        while time.monotonic() < deadline and any(system.procs.alive("board-" + b.device) for b in system.boards):
            if tty:  # one refreshing line on a terminal, a line every 5 s in a log
                print(render(figures(system), time.monotonic() - started), end="", file=out, flush=True)
            elif ticks % 5 == 0:
                print(render(figures(system), time.monotonic() - started, final=True), file=out, flush=True)
            ticks += 1
            time.sleep(1.0)
        drain_until = time.monotonic() + IN_FLIGHT_S  # the last summaries and outcome puts
        while figures(system)["pending"] and time.monotonic() < drain_until:
            time.sleep(0.5)
        time.sleep(1.0)
        final = figures(system, final=True)
        codes = {b.device: system.procs.procs["board-" + b.device].poll() for b in system.boards}
        final["board_exit_codes_ok"] = all(c == 0 for c in codes.values())
        final["seconds"] = round(time.monotonic() - started, 1)
        print(("\n" if tty else "") + render(final, time.monotonic() - started, final=True), file=out)
        if args.json:
            print(json.dumps(final))
        else:
            print("\nFinal figures:")
            width = max(len(k) for k in final)
            for key, value in final.items():
                print("  %-*s  %s" % (width, key, value))
            print("\n'top=truth early -> late': share of summaries whose top outcome is what really happened,"
                  "\nin the first and last third of the run. It rises as outcomes reach the swarm.")
        ok = final["board_exit_codes_ok"] and final["lost"] == 0
        if not ok:
            print("qis-demo: some readings went unanswered or a board failed; logs in %s" % workdir, file=sys.stderr)
            args.keep = True
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\nqis-demo: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        system.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
