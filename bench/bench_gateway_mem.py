"""Site gateway memory under the HIL soak's workload, compressed: RSS over time, optional tracemalloc diff.

What runs: `LocalSystem` (real `qis-gateway run` processes, one Mosquitto per gateway, one UDP swarm) with
G gateways and 2 sites, as `make hil-soak` sets it up, but the boards are replaced by a Python publisher
that sends what the emulated boards send (the device's own seeded SimSensor in "random" mode, an fp then
an outcome per reading, labelled by vibration zone as the soak's `sim_outcome`) at `--rate` readings a
second per board instead of one. So the soak's 600 readings x 10 boards take about a minute at rate 10.

Measured: VmRSS of both site gateways after warm-up (the first `--warm` readings, as the soak's 30 s)
and every `--sample-every` readings; `ratio` = RSS at the end / RSS after warm-up (the soak's check is
< 1.5). With `--trace` gateway 0 runs under bench/memtrace.py with QIS_MEMTRACE_DIR: snapshots after
warm-up and at the end, and the 25 allocation lines that grew most are printed and saved.

Run: .venv/bin/python bench/bench_gateway_mem.py [--readings 600] [--rate 10] [--trace]
Writes bench/results/gateway_mem.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from qis import messages
from qis.topics import topic
from qis_device.sim import SimSensor
from qis_gateway.harness.system import MACHINE_CLASSES, SIM_OUTCOMES, LocalSystem, SystemSpec
from qis_gateway.service import load_schemas

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memtrace import rss_kib  # noqa: E402  (bench/memtrace.py, beside this file)

RESULT = Path(__file__).resolve().parent / "results" / "gateway_mem.json"
MEMTRACE = Path(__file__).resolve().parent / "memtrace.py"
log = logging.getLogger("bench_gateway_mem")


class SiteClient:
    """One paho connection per site: publishes the boards' frames, counts the summaries that come back."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.summaries = 0
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        self.client.max_inflight_messages_set(1000)
        ready = threading.Event()

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            client.subscribe("qis/v1/+/+/summary", 1)

        def on_subscribe(*_: Any) -> None:
            ready.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with self._lock:
                self.summaries += 1

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("bench client could not subscribe at %s:%d" % (host, port))

    def publish(self, topic_name: str, payload: bytes) -> None:
        self.client.publish(topic_name, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def top_growth(first: Path, last: Path, limit: int = 25) -> list[dict[str, Any]]:
    a = tracemalloc.Snapshot.load(str(first))
    b = tracemalloc.Snapshot.load(str(last))
    out = []
    for stat in b.compare_to(a, "lineno")[:limit]:
        frame = stat.traceback[0]
        out.append({"where": "%s:%d" % (frame.filename, frame.lineno), "size_diff_kib": round(stat.size_diff / 1024, 1),
                    "count_diff": stat.count_diff, "size_kib": round(stat.size / 1024, 1)})
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    schema = load_schemas([], Path("."))["machine-health/1"]
    spec = SystemSpec(gateways=args.gateways, sites=2, boards=0)
    system = LocalSystem(spec, workdir)
    trace_dir = workdir / "memtrace"
    try:
        system.prepare()
        boards = [system.add_board("board-%d" % b, b % 2, seed=b + 1) for b in range(args.boards)]
        for gw in system.gateways:
            if (args.trace or args.stats) and gw.index == 0:
                env = {"QIS_MEMTRACE_DIR": str(trace_dir), "QIS_MEMTRACE_FRAMES": "1" if args.trace else "0"}
                system.procs.start(gw.name, [sys.executable, str(MEMTRACE), "--config", str(gw.dir / "gateway.toml")],
                                   env=env)
            else:
                system.start_gateway(gw.index)
        for gw in system.gateways:
            system.wait_healthy(gw.index)
        pids = {i: system.procs.procs["gw%d" % i].pid for i in (0, 1)}
        clients = {i: SiteClient(system.gateways[i].broker.host, system.gateways[i].broker.port, "bench-%d" % i)
                   for i in (0, 1)}
        sensors = []
        for b, board in enumerate(boards):
            cls = MACHINE_CLASSES[(b + 1) % len(MACHINE_CLASSES)]
            sensors.append((board, SimSensor(schema, b + 1, "random", {"machine_class": cls}), [0], cls))
        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        sample = {i: rss_kib(pid) for i, pid in pids.items()}
        samples.append({"readings": 0, "t_s": 0.0, "rss_kib": sample})
        period = 1.0 / args.rate
        warm: dict[int, int] = {}
        for n in range(1, args.readings + 1):
            due = t0 + n * period
            for board, sensor, seq, cls in sensors:
                reading = dict(sensor(), machine_class=cls)
                fp = schema.fingerprint(reading)
                seq[0] += 1
                fp_seq = seq[0]
                client = clients[board.gateway]
                client.publish(topic(board.site, board.device, "fp"),
                               messages.encode_fp(board.device, fp_seq, fp, board.secret))
                fields = fp.fields
                label = SIM_OUTCOMES["labels"].get(fields.get(SIM_OUTCOMES["field"]), "observed")
                seq[0] += 1
                client.publish(topic(board.site, board.device, "outcome"),
                               messages.encode_outcome(board.device, seq[0], fp_seq, label, board.secret))
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if args.restart_every and n % args.restart_every == 0:
                site = (n // args.restart_every) % 2  # as the soak: the site brokers restart in turn
                system.gateways[site].broker.restart()
            if n == args.warm:
                warm = {i: rss_kib(pid) for i, pid in pids.items()}
                if args.trace or args.stats:
                    os.kill(pids[0], signal.SIGUSR1)
            if n % args.sample_every == 0 or n == args.readings:
                if args.stats and n != args.warm:
                    os.kill(pids[0], signal.SIGUSR1)
                sample = {i: rss_kib(pid) for i, pid in pids.items()}
                samples.append({"readings": n, "t_s": round(time.monotonic() - t0, 1), "rss_kib": sample})
                log.info("%d readings/board, %.0f s: RSS gw0 %d KiB, gw1 %d KiB; summaries %d/%d", n,
                         time.monotonic() - t0, sample[0], sample[1], clients[0].summaries, clients[1].summaries)
        sent_s = time.monotonic() - t0
        expected = {i: args.readings * sum(1 for b in boards if b.gateway == i) for i in (0, 1)}
        deadline = time.monotonic() + args.drain_s
        while time.monotonic() < deadline:
            done = all(clients[i].summaries >= expected[i] for i in (0, 1))
            queued = sum(system.gateway_status(i)["queue_depth"] for i in (0, 1))
            if done and queued == 0:
                break
            time.sleep(1.0)
        drained_s = time.monotonic() - t0
        end = {i: rss_kib(pid) for i, pid in pids.items()}
        samples.append({"readings": args.readings, "t_s": round(drained_s, 1), "rss_kib": end, "drained": True})
        status = {i: system.gateway_status(i) for i in (0, 1)}
        growth: list[dict[str, Any]] = []
        native: list[dict[str, Any]] = []
        if args.trace or args.stats:
            os.kill(pids[0], signal.SIGUSR1)
            time.sleep(3.0)
            for p in sorted(trace_dir.glob("snapshot-*.json"), key=lambda p: int(p.stem.split("-")[1])):
                info = json.loads(p.read_text())
                native.append({"rss_kib": info["rss_kib"], "traced_kib": info["traced_bytes"] // 1024,
                               **{k: v // 1024 for k, v in info["native"].items()},
                               "OutcomePacket": dict(info["types"]).get("OutcomePacket", 0)})
            snaps = sorted(trace_dir.glob("snapshot-*.tracemalloc"), key=lambda p: int(p.stem.split("-")[1]))
            if len(snaps) >= 2:
                growth = top_growth(snaps[0], snaps[-1])
                infos = [json.loads(p.with_suffix(".json").read_text()) for p in (snaps[0], snaps[-1])]
                growth.insert(0, {"traced_kib": [i["traced_bytes"] // 1024 for i in infos],
                                  "rss_kib": [i["rss_kib"] for i in infos],
                                  "types_first": infos[0]["types"][:15], "types_last": infos[1]["types"][:15]})
        for c in clients.values():
            c.close()
        result = {
            "workload": {"gateways": args.gateways, "boards": args.boards, "readings_per_board": args.readings,
                         "rate_per_board_s": args.rate, "warm_readings": args.warm,
                         "broker_restart_every": args.restart_every,
                         "frames_per_reading": 2, "sent_s": round(sent_s, 1), "drained_s": round(drained_s, 1)},
            "summaries": {i: clients[i].summaries for i in (0, 1)}, "expected_summaries": expected,
            "outcomes_stored": {i: status[i]["outcomes_stored"] for i in (0, 1)},
            "stored_packets": {i: status[i]["stored_packets"] for i in (0, 1)},
            "verified_cache": {i: status[i].get("verified_cache") for i in (0, 1)},
            "rss_start_kib": samples[0]["rss_kib"], "rss_warm_kib": warm, "rss_end_kib": end,
            "ratio_end_over_warm": {i: round(end[i] / warm[i], 3) if warm.get(i) else None for i in (0, 1)},
            "samples": samples,
            "gw0_native_kib": native,
            "tracemalloc_growth": growth,
        }
        return result
    finally:
        system.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateways", type=int, default=8, help="gateways in the swarm (the soak runs 8)")
    ap.add_argument("--boards", type=int, default=10, help="boards, alternating between the two sites")
    ap.add_argument("--readings", type=int, default=600, help="readings per board (the soak's 600)")
    ap.add_argument("--rate", type=float, default=10.0, help="readings per second per board (the soak's 1)")
    ap.add_argument("--warm", type=int, default=30, help="readings before the warm-up RSS sample")
    ap.add_argument("--sample-every", type=int, default=60)
    ap.add_argument("--restart-every", type=int, default=0,
                    help="restart a site broker every N readings, alternating sites (the soak: every 120 s)")
    ap.add_argument("--drain-s", type=float, default=120.0)
    ap.add_argument("--trace", action="store_true", help="tracemalloc in gateway 0, top growth diffed")
    ap.add_argument("--stats", action="store_true",
                    help="gateway 0 writes RSS, SQLite and malloc totals at every sample (no tracemalloc)")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, snapshots)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="qis-memsoak-"))
    result = run(args, workdir)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("work directory kept: %s" % workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("rss_start_kib", "rss_warm_kib", "rss_end_kib", "ratio_end_over_warm",
                                             "summaries", "expected_summaries", "outcomes_stored",
                                             "verified_cache")}))
    for row in result["gw0_native_kib"] + result["tracemalloc_growth"]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
