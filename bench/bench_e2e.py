"""End-to-end benchmark: board publish -> summary received, on the whole system.

    .venv/bin/python bench/bench_e2e.py [--quick] [--out bench/results/e2e.json]

For swarms of 4, 16 and 64 gateways (each a `qis-gateway run` process with its own Mosquitto, one UDP
swarm on 127.0.0.1):
- latency: 1, 10 and 50 emulated boards (the real device code under the MicroPython unix port) at
  site 0, readings every 0.5 s; p50/p99 of board publish -> summary arrival, on the observer's clock;
  hops per lookup (from the summaries);
- throughput: a CPython load generator publishes pre-built fp frames for 50 registered devices as fast
  as the broker takes them (QoS 1); readings/s the gateway turns into summaries, and their latency;
- memory: resident set of the site gateway after the run (VmRSS);
- baseline, same run and same broker: an MQTT echo that answers each fp frame at once (no swarm, no
  synthesis), so the gateway's own cost shows as the difference.
Writes bench/results/e2e.json and bench/results/e2e.png (latency and hops against swarm size).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from qis import messages
from qis.schema import load_schema
from qis.topics import parse_topic, topic
from qis_gateway.harness.system import LocalSystem, SystemSpec
from qis_gateway.registry import Registry

HERE = Path(__file__).resolve().parent
SCHEMA = load_schema(str(HERE.parent / "shared" / "qis" / "schemas" / "machine_health.json"))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 2)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def frames_for(devices: list[tuple[str, bytes]], per_device: int, site: str) -> list[tuple[str, bytes, str, int]]:
    import random

    rng = random.Random(7)
    out = []
    for seq in range(1, per_device + 1):
        for device, secret in devices:
            reading = {"machine_class": rng.choice(["pump", "fan"]), "temperature_c": rng.uniform(20, 95),
                       "vibration_mm_s": rng.uniform(0.3, 9), "load_pct": rng.randint(5, 110),
                       "current_a": rng.uniform(2, 30)}
            fp = SCHEMA.fingerprint(reading)
            out.append((topic(site, device, "fp"), messages.encode_fp(device, seq, fp, secret), device, seq))
    return out


def blast(host: str, port: int, frames: list[tuple[str, bytes, str, int]], timeout_s: float,
          echo: bool = False) -> dict[str, Any]:
    """Publish every frame (QoS 1, as fast as acks allow) and time each summary's arrival."""
    sent: dict[tuple[str, int], float] = {}
    got: dict[tuple[str, int], float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        try:
            site, device, kind = parse_topic(msg.topic)
            body = json.loads(bytes(msg.payload)[:-messages.TAG_BYTES])
        except ValueError:
            return
        if kind == "fp" and echo:  # the baseline: answer at once on the summary topic
            client.publish(topic(site, device, "summary"), msg.payload, qos=1)
            return
        if kind == "summary" and not msg.retain:
            key = (device, body.get("re", body.get("seq")))  # the echo baseline returns the fp body itself
            with lock:
                got.setdefault(key, now)
                if len(got) >= len(frames):
                    done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub-%d" % time.monotonic_ns())
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe([("qis/v1/+/+/summary", 1)] + ([("qis/v1/+/+/fp", 1)] if echo else []))
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub-%d" % time.monotonic_ns())
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect(host, port)
    pub.loop_start()
    time.sleep(0.3)
    start = time.perf_counter()
    infos = []
    for t, payload, device, seq in frames:
        sent[(device, seq)] = time.perf_counter()
        infos.append(pub.publish(t, payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout_s)
    done.wait(timeout_s)
    end = time.perf_counter()
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    with lock:
        lat = [(got[k] - sent[k]) * 1000 for k in got if k in sent]
        last = max(got.values()) if got else end
    return {"frames": len(frames), "answered": len(lat), "seconds": round(last - start, 3),
            "per_s": round(len(lat) / max(1e-9, last - start), 1), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def latency_run(system: LocalSystem, boards: int, readings: int) -> dict[str, Any]:
    group = [system.add_board("lat%d-%d" % (boards, i), 0, seed=i + 1) for i in range(boards)]
    obs = system.observers[0]
    before = len(obs.latencies_ms())
    system.start_boards(group, readings)
    codes = system.wait_boards(120 + readings * 5, group)
    time.sleep(1.0)
    lat = obs.latencies_ms()[before:]
    hops = [body.get("hops", 0) for b in group for body, _ in obs.snapshot()[(b.site, b.device)].summaries]
    return {"boards": boards, "readings": boards * readings, "answered": len(lat), "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99), "hops_p50": statistics.median(hops) if hops else None,
            "hops_max": max(hops) if hops else None, "boards_ok": all(c == 0 for c in codes.values())}


def run_swarm(gateways: int, board_counts: list[int], readings: int, load_per_device: int,
              workdir: Path) -> dict[str, Any]:
    spec = SystemSpec(gateways=gateways, sites=1, boards=0, readings=readings, interval_s=0.5, min_n=3)
    result: dict[str, Any] = {"gateways": gateways}
    with LocalSystem(spec, workdir) as system:
        t0 = time.monotonic()
        system.start()
        result["startup_s"] = round(time.monotonic() - t0, 1)
        result["latency"] = [latency_run(system, b, readings) for b in board_counts]
        registry = Registry(system.gateways[0].registry_path)
        devices = [(r.device_id, r.secret) for r in (registry.add("load-%d" % i, system.gateways[0].site)
                                                      for i in range(50))]
        registry.close()
        gw = system.gateways[0]
        frames = frames_for(devices, load_per_device, gw.site)
        result["throughput"] = blast(gw.broker.host, gw.broker.port, frames, timeout_s=120)
        result["gateway_rss_mb"] = rss_mb(system.procs.procs["gw0"].pid)
        rss = [rss_mb(system.procs.procs[g.name].pid) for g in system.gateways]
        result["swarm_member_rss_mb_median"] = statistics.median([r for r in rss if r])
        # Baseline on this same broker: an echo answers every fp at once.
        system.procs.stop("gw0")
        echo_frames = frames_for([(d + "-echo", s) for d, s in devices], load_per_device, gw.site)
        result["baseline_echo"] = blast(gw.broker.host, gw.broker.port, echo_frames, timeout_s=60, echo=True)
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["gateways"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for idx, boards in enumerate(r["boards"] for r in results[0]["latency"]):
        ax1.plot(sizes, [r["latency"][idx]["p50_ms"] for r in results], "o-", label="p50, %d boards" % boards)
        ax1.plot(sizes, [r["latency"][idx]["p99_ms"] for r in results], "x--", label="p99, %d boards" % boards)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("gateways in the swarm")
    ax1.set_ylabel("board publish -> summary (ms)")
    ax1.legend(fontsize=7)
    ax2.plot(sizes, [max(x["hops_max"] or 0 for x in r["latency"]) for r in results], "s-", label="max")
    ax2.plot(sizes, [statistics.median([x["hops_p50"] or 0 for x in r["latency"]]) for r in results], "o-",
             label="p50")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("gateways in the swarm")
    ax2.set_ylabel("lookup hops")
    ax2.legend()
    fig.suptitle("qis-edge end to end (%s, %s)" % (time.strftime("%Y-%m-%d"), platform.machine()))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 and 16 gateways, 1 and 10 boards, fewer readings")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "e2e.json")
    args = ap.parse_args(argv)
    sizes = [4, 16] if args.quick else [4, 16, 64]
    boards = [1, 10] if args.quick else [1, 10, 50]
    readings = 6 if args.quick else 10
    results = []
    with tempfile.TemporaryDirectory(prefix="qis-bench-e2e-") as tmp:
        for g in sizes:
            print("e2e: %d gateways ..." % g, flush=True)
            r = run_swarm(g, boards, readings, 10 if args.quick else 20, Path(tmp) / ("g%d" % g))
            print("e2e: %d gateways: %s" % (g, json.dumps(r)), flush=True)
            results.append(r)
    doc = {"command": "bench/bench_e2e.py" + (" --quick" if args.quick else ""),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"python": platform.python_version(), "cpu": platform.machine(),
                       "cores": __import__("os").cpu_count()},
           "swarms": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print("wrote %s and %s" % (args.out, args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
