"""The two swarm backends side by side on one workload: our Kademlia and OpenDHT.

    .venv/bin/python bench/bench_backends.py [--gateways 8] [--out bench/results/backends.json]

For each backend, in one run on this machine: a LocalSystem of G gateway processes (each with its own
Mosquitto); 6 emulated boards at site 0 report outcomes for 12 readings each (cycling through the
schema's situations, so each address collects several packets); then
- lookups: a client node joins the swarm and reads every address those outcomes were stored at (all
  levels), 3 times each: latency p50/p99 (to the last value), first-value p50, packets per address;
- gateway load: 50 registered devices' fp frames published as fast as the broker takes them: the
  site gateway's answered readings/s, its CPU seconds (utime+stime from /proc) and resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_e2e import blast, frames_for, pct, rss_mb
from qis_gateway.harness.system import LocalSystem, SystemSpec
from qis_gateway.registry import Registry

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def lookups(backend: str, boot: tuple[str, int], addresses: list[bytes], workdir: Path,
                  rounds: int = 3) -> dict[str, Any]:
    if backend == "opendht":
        from qis_gateway.swarm_opendht import OpenDhtSwarm
        swarm: Any = OpenDhtSwarm(("127.0.0.1", 0), workdir, [boot])
    else:
        from qis_gateway.swarm.api import UdpSwarm
        swarm = UdpSwarm(("127.0.0.1", 0), workdir, [boot])
    await swarm.start()
    await asyncio.sleep(1.0)
    lat, first, counts, hops, msgs = [], [], [], [], []
    try:
        for _ in range(rounds):
            for address in addresses:
                r = await swarm.get(address, 200)
                lat.append(r.elapsed_ms)
                if r.first_ms is not None:
                    first.append(r.first_ms)
                counts.append(len(r.values))
                hops.append(r.hops)
                msgs.append(r.messages)
    finally:
        await swarm.stop(graceful=False)
    return {"lookups": len(lat), "latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99)},
            "first_ms": {"p50": pct(first, 50)}, "packets_per_address": {"median": statistics.median(counts),
                                                                        "max": max(counts)},
            "empty_lookups": sum(c == 0 for c in counts),
            "hops_p50": statistics.median(hops), "requests_p50": statistics.median(msgs)}


def run_backend(backend: str, gateways: int, workdir: Path) -> dict[str, Any]:
    spec = SystemSpec(gateways=gateways, sites=1, boards=0, readings=12, interval_s=0.3, min_n=3,
                      backend=backend, sensor_mode="cycle")
    with LocalSystem(spec, workdir) as system:
        system.prepare()
        boards = [system.add_board("b%d" % i, 0, seed=i + 1, machine_class="pump") for i in range(6)]
        system.start_gateways()
        system.start_observers()
        system.start_boards(boards)
        system.wait_boards(180, boards)
        obs = system.observers[0]
        obs.wait_until(lambda: system.gateway_status(0)["queue_depth"] == 0, 60)
        # every address the outcomes went to: the exact and coarser levels of each reading's fields
        from qis.schema import load_schema
        schema = load_schema(str(HERE.parent / "shared" / "qis" / "schemas" / "machine_health.json"))
        addresses: list[bytes] = []
        for b in boards:
            for fields in obs.snapshot()[(b.site, b.device)].fields.values():
                for a in schema.level_addresses(fields):
                    if a not in addresses:
                        addresses.append(a)
        result: dict[str, Any] = {"backend": backend, "gateways": gateways, "addresses": len(addresses)}
        gw = system.gateways[0]
        result["lookup"] = asyncio.run(lookups(backend, ("127.0.0.1", gw.udp_port), addresses,
                                               workdir / "client"))
        registry = Registry(gw.registry_path)
        devices = [(r.device_id, r.secret) for r in (registry.add("load-%d" % i, gw.site) for i in range(50))]
        registry.close()
        pid = system.procs.procs["gw0"].pid
        cpu0 = cpu_s(pid)
        result["gateway_load"] = blast(gw.broker.host, gw.broker.port, frames_for(devices, 10, gw.site), 120)
        result["gateway_load"]["cpu_s"] = round(cpu_s(pid) - cpu0, 2)
        result["gateway_rss_mb"] = rss_mb(pid)
    return result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "backends.json")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="qis-bench-backends-") as tmp:
        for backend in ("kademlia", "opendht"):
            print("backends: %s ..." % backend, flush=True)
            r = run_backend(backend, args.gateways, Path(tmp) / backend)
            print("backends: %s" % json.dumps(r), flush=True)
            results.append(r)
    doc = {"command": "bench/bench_backends.py --gateways %d" % args.gateways,
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"python": platform.python_version(), "cpu": platform.machine(), "cores": os.cpu_count()},
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
