"""CPU per reading of the gateway's own path, without MQTT or a swarm: a diagnostic for issue 17.

What runs, in this process: a Bridge wired as the service wires it (registry, state DB, verified-packet
cache, Evidence with the 1 s lookup cache) over an in-memory swarm whose one address (where every fp of
the run lands) holds P signed packets from 4 signers. Per batch of B fps from D boards: admission under
one group commit (Intake's order: state DB, then registry), then each fp's answer (lookup, synthesis,
summary frame). Reported: user CPU per reading, best and median of R repeats, and system CPU (mostly the
fsyncs of the group commits, which vary with the disk's load). Unlike
bench/bench_gateway_throughput.py it leaves out paho, the broker and the thread hand-off, so a change to
the bridge's path shows up above the noise of a shared machine.

    .venv/bin/python bench/experiments/bridge_cpu.py [--packets 100] [--readings 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import nacl.signing
from qis import messages
from qis.topics import topic
from qis_gateway.backend import LookupResult
from qis_gateway.bridge import Bridge
from qis_gateway.config import SynthesisSettings, default
from qis_gateway.evidence import Evidence
from qis_gateway.keys import generate_key_file
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import OutcomePacket, encode
from qis_gateway.registry import Registry
from qis_gateway.service import load_schemas

SCHEMA = load_schemas([], Path("."))["machine-health/1"]
READING = {"machine_class": "pump", "temperature_c": 55.0, "vibration_mm_s": 2.0, "load_pct": 50,
           "current_a": 10.0}
LABELS = ("normal", "bearing_wear", "overheating")


class OneAddressSwarm:
    """get() answers every address with the same values, as a swarm would after a put."""

    def __init__(self, values: tuple[bytes, ...]) -> None:
        self.values = values

    async def get(self, address: bytes, limit: int = 200) -> LookupResult:
        return LookupResult(self.values[:limit], 2, 3, 0.5, 0.2)


def fill(address: bytes, count: int, now_s: float) -> tuple[bytes, ...]:
    keys = [nacl.signing.SigningKey(hashlib.sha256(b"signer %d" % i).digest()) for i in range(4)]
    fingerprint = SCHEMA.fingerprint(READING)
    out = []
    for i in range(count):
        vector = tuple((v + 7 * i) % 255 - 127 for v in fingerprint.vector)
        packet = OutcomePacket(address, SCHEMA.schema_id, int(now_s) - 60 * i, vector, LABELS[i % 3],
                               float(i % 5) if i % 2 else None, 1.0 if i % 4 else 0.5, nonce=b"%016d" % i)
        out.append(encode(packet, keys[i % 4]))
    return tuple(out)


async def run(tmp: Path, packets: int, readings: int, devices: int, batch: int) -> tuple[float, float]:
    """(user, system) CPU ms per reading."""
    registry, state = Registry(tmp / "registry.sqlite"), StateDB(tmp / "state.sqlite")
    records = [registry.add("pump-%03d" % i, "site-a") for i in range(devices)]
    fingerprint = SCHEMA.fingerprint(READING)
    address = SCHEMA.level_addresses(fingerprint.fields)[0]
    metrics = Metrics()
    evidence = Evidence(OneAddressSwarm(fill(address, packets, time.time())), VerifiedPacketCache(20_000), metrics,
                        SynthesisSettings(), lookup_limit=default("swarm", "lookup_limit"), lookup_cache_s=1.0)
    published: list[bytes] = []
    bridge = Bridge(registry, state, {SCHEMA.schema_id: SCHEMA}, generate_key_file(tmp / "gw.key"), evidence,
                    lambda t, p, q, r: published.append(p), metrics)
    frames = [(topic(r.site, r.device_id, "fp"), messages.encode_fp(r.device_id, seq, fingerprint, r.secret))
              for seq in range(1, readings // devices + 1) for r in records]
    started = os.times()
    for at in range(0, len(frames), batch):
        with ExitStack() as stack:
            stack.enter_context(registry.batch())
            stack.enter_context(state.batch())
            admitted = [bridge.admit(t, p) for t, p in frames[at:at + batch]]
        for a in admitted:
            await bridge.answer_fp(a)
    ended = os.times()
    first = messages.decode(published[0], records[0].secret, "summary") if published else {}
    if len(published) != len(frames) or not first.get("enough"):
        raise SystemExit("%d of %d readings answered, first %r" % (len(published), len(frames), first))
    state.close()
    registry.close()
    return (1000 * (ended.user - started.user) / len(frames), 1000 * (ended.system - started.system) / len(frames))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100)
    ap.add_argument("--readings", type=int, default=2000)
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16, help="fps admitted per group commit")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="qis-bridge-cpu-") as tmp:
            runs.append(asyncio.run(run(Path(tmp), args.packets, args.readings, args.devices, args.batch)))
    user, system = [u for u, _ in runs], [s for _, s in runs]
    print(json.dumps({"packets": args.packets, "readings": args.readings,
                      "user_ms_per_reading_best": round(min(user), 4),
                      "user_ms_per_reading_median": round(statistics.median(user), 4),
                      "system_ms_per_reading_median": round(statistics.median(system), 4)}))


if __name__ == "__main__":
    main()
