"""Gateway throughput: readings/s, latency and CPU per reading of one real gateway under a CPython load.

    .venv/bin/python bench/bench_gateway_throughput.py [--quick] [--json] [--out FILE]

The system: G `qis-gateway run` processes in one UDP swarm on 127.0.0.1, gateway 0 with a real Mosquitto
(the harness's generated config) and D provisioned devices. Gateway 0 runs under
`strace -f -e trace=fsync,fdatasync --seccomp-bpf`, which stops it only on those two calls, so every
fsync is counted. Before a load point, one address (where every fp of the run lands) is filled with P
signed outcome packets (P = 5, 100, 1,000; a node keeps 256 per address) by a short-lived swarm node on
127.0.0.2 that leaves the swarm gracefully once done.

The load generator is paho in this process, sending valid fp frames (QoS 1, each device its own rising
seq) and timing each summary's arrival (matched by device and `re`):
- closed loop: every device keeps one fp in flight (D in flight); readings/s answered;
- offered rates (100/300/1,000/3,000 per s): latency p50/p99 against offered load, answered/s;
- outcomes: fp-only, outcome-only (outcomes for readings already answered, sent as fast as acked) and
  mixed (each answered fp followed by its outcome): admitted/s, stored/s, outbox depth over time.
Per point: gateway CPU seconds per reading (utime+stime of gateway 0 from /proc), fsyncs per reading and
gateway 0's peak resident set during the point (VmHWM, reset at its start; the unit's MemoryHigh is 96M).
strace costs the gateway more than its fsync stops: perf showed it ptrace-stopped on entry and exit of its
send and futex calls too, and with `--no-fsync-count` (no strace, fsyncs_per_reading null) `--quick` gave
0.45-0.50 instead of 0.60-0.64 ms of gateway CPU per reading (alternating runs, same code, loaded box).
Baselines, same run, same broker: a paho echo, and an echo through the gateway's own MQTT client module
(`qis_gateway.mqtt_client`), each in its own process, answering every fp at once on a topic the gateway
does not read. The machine may be shared: compare ratios within one run.
Writes bench/results/gateway_throughput.json and .png (latency against offered load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
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
from qis.topics import topic
from qis_gateway.harness.system import BIN, LocalSystem, SystemSpec
from qis_gateway.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_gateway import Sampler, available  # noqa: E402

HERE = Path(__file__).resolve().parent
SCHEMA = load_schema(str(HERE.parent / "shared" / "qis" / "schemas" / "machine_health.json"))
READING = {"machine_class": "pump", "temperature_c": 55.0, "vibration_mm_s": 2.0, "load_pct": 50,
           "current_a": 10.0}
ECHO_PREFIX = "bench"  # echo topics: bench/<site>/<device>/fp -> bench/<site>/<device>/summary
CLK_TCK = os.sysconf("SC_CLK_TCK")
FILL_IP = "127.0.0.2"  # the fill stands for other gateways: another source address


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 2)


def cpu_s(pid: int) -> float:
    """utime+stime of a process and all its threads, in seconds."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def reset_peak_rss(pid: int) -> None:
    """Start a new peak resident set for `pid` (Linux: "5" to /proc/PID/clear_refs resets VmHWM)."""
    try:
        Path("/proc/%d/clear_refs" % pid).write_text("5")
    except OSError:  # not allowed (another user): the peak then counts from the process's start
        pass


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, None when /proc does not say."""
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def child_pid(pid: int) -> int:
    """The traced gateway under strace: its child running qis-gateway (strace may first fork a short-lived
    probe of its own, which its first child then is)."""
    for _ in range(100):
        for task in Path("/proc/%d/task" % pid).iterdir():
            for kid in (task / "children").read_text().split():
                try:  # before its exec (and as the probe) a child still runs strace, with strace's argv
                    if (Path("/proc/%s/comm" % kid).read_text().strip() != "strace"
                            and b"qis-gateway" in Path("/proc/%s/cmdline" % kid).read_bytes()):
                        return int(kid)
                except OSError:
                    continue  # gone meanwhile (the probe)
        time.sleep(0.1)
    raise RuntimeError("strace started no qis-gateway child")


def nodelay(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Load:
    """One paho publisher+subscriber pair driving fp (and outcome) frames for a set of devices."""

    def __init__(self, host: str, port: int, devices: list[tuple[str, bytes]], site: str, prefix: str = "qis/v1"):
        self.devices, self.site, self.prefix = devices, site, prefix
        self.seq = {d: 0 for d, _ in devices}
        self.secret = dict(devices)
        self.sent: dict[tuple[str, int], float] = {}
        self.got: dict[tuple[str, int], float] = {}
        self.answered_fps: list[tuple[str, int]] = []
        self.busy: dict[tuple[str, int], float] = {}  # fps the gateway shed with a "busy" error frame
        self.lock = threading.Lock()
        self.on_answer: Any = None
        self.fp_payload = SCHEMA.fingerprint(READING)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-load-%d" % time.monotonic_ns())
        # no cap: with one, paho scans every message in flight on each PUBACK, and once the broker lags
        # that cost grows with the lag (publish -> PUBACK p50 4.5 s in one offered-3,000/s run)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.ack_lock = threading.Lock()
        self.published: dict[int, float] = {}  # mid -> publish() time, until the broker's PUBACK
        self.broker_ack_ms: list[float] = []  # publish() -> the broker's PUBACK: the generator's own lag
        self.client.connect(host, port)
        nodelay(self.client)  # the generator must not be the Nagle-bound part
        self.client.subscribe([("%s/%s/+/summary" % (prefix, site), 1), ("%s/%s/+/error" % (prefix, site), 1)])
        self.client.loop_start()
        time.sleep(0.3)

    def _topic(self, device: str, kind: str) -> str:
        return topic(self.site, device, kind).replace("qis/v1", self.prefix, 1)

    def send_fp(self, device: str) -> None:
        with self.lock:
            self.seq[device] += 1
            seq = self.seq[device]
            self.sent[(device, seq)] = time.perf_counter()
            sent = self.sent[(device, seq)]
        # outside self.lock: paho's thread holds its own locks while it calls _on_publish
        info = self.client.publish(self._topic(device, "fp"), messages.encode_fp(
            device, seq, self.fp_payload, self.secret[device]), qos=1)
        with self.ack_lock:
            if self.published.pop(-info.mid, None) is None:  # the PUBACK may come before this line
                self.published[info.mid] = sent

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        now = time.perf_counter()
        with self.ack_lock:
            t = self.published.pop(mid, None)
            if t is None:
                self.published[-mid] = now  # early: send_fp records nothing for it (mids are >= 1)
            else:
                self.broker_ack_ms.append((now - t) * 1000)

    def send_outcome(self, device: str, reading_seq: int) -> None:
        with self.lock:
            self.seq[device] += 1
            seq = self.seq[device]
        self.client.publish(self._topic(device, "outcome"), messages.encode_outcome(
            device, seq, reading_seq, "normal", self.secret[device], value=1.0), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if msg.retain:
            return
        try:
            device = msg.topic.split("/")[-2]
            body = json.loads(bytes(msg.payload)[:-messages.TAG_BYTES])
        except ValueError:
            return
        key = (device, body.get("re", body.get("seq")))
        if msg.topic.endswith("/error"):
            if body.get("code") == "busy":
                with self.lock:
                    if (device, body.get("seq")) in self.busy:
                        return
                    self.busy[(device, body.get("seq"))] = now
                if self.on_answer is not None:  # closed loop: a board sends its next
                    self.on_answer(device, body.get("seq"))  # reading after a "busy" too
            return
        with self.lock:
            if key in self.got:
                return
            self.got[key] = now
            self.answered_fps.append(key)
        if self.on_answer is not None:
            self.on_answer(device, key[1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Answers of frames sent in [t0, t1): count, per second and latency percentiles."""
        with self.lock:
            lat = [(self.got[k] - s) * 1000 for k, s in self.sent.items() if t0 <= s < t1 and k in self.got]
            offered = sum(1 for s in self.sent.values() if t0 <= s < t1)
            busy = sum(1 for k, s in self.sent.items() if t0 <= s < t1 and k in self.busy)
        with self.ack_lock:
            acks, self.broker_ack_ms = self.broker_ack_ms, []
        return {"sent": offered, "answered": len(lat), "busy": busy, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "broker_ack_p99_ms": pct(acks, 99)}


def closed_loop(load: Load, seconds: float, outcomes: bool = False) -> dict[str, Any]:
    stop = threading.Event()

    def next_one(device: str, seq: int) -> None:
        if stop.is_set():
            return
        if outcomes:
            load.send_outcome(device, seq)
        load.send_fp(device)

    load.on_answer = next_one
    t0 = time.perf_counter()
    for device, _ in load.devices:
        load.send_fp(device)
    time.sleep(seconds)
    stop.set()
    t1 = time.perf_counter()
    load.on_answer = None
    time.sleep(1.0)
    with load.lock:
        answered = sum(1 for t in load.got.values() if t0 <= t < t1)
    out = load.window(t0, t1)
    out.update({"seconds": round(t1 - t0, 2), "readings_per_s": round(answered / (t1 - t0), 1),
                "in_flight": len(load.devices)})
    return out


def open_loop(load: Load, rate: float, seconds: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        load.send_fp(load.devices[i % len(load.devices)][0])
    t1 = time.perf_counter()
    for _ in range(60):  # until every frame was answered or shed, or a minute passed (unbounded queues)
        time.sleep(0.5)
        with load.lock:
            left = sum(1 for k, s in load.sent.items() if t0 <= s < t1 and k not in load.got and k not in load.busy)
        if not left:
            break
    with load.lock:
        answered = sum(1 for t in load.got.values() if t0 <= t < t1 + 1.0)
    out = load.window(t0, t1)
    out.update({"offered_per_s": rate, "achieved_offer_per_s": round(n / (t1 - t0), 1),
                "busy_per_s": round(out["busy"] / (t1 - t0), 1),
                "answered_per_s": round(answered / (t1 - t0 + 1.0), 1)})
    return out


def echo_server(kind: str, host: str, port: int) -> None:
    """Child process: answer every bench/<site>/<device>/fp at once on .../summary (QoS 1)."""
    sub = (ECHO_PREFIX + "/+/+/fp", 1)
    if kind == "paho":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-echo-paho")
        client.max_inflight_messages_set(1000)
        client.on_message = lambda c, u, m: c.publish(m.topic[:-2] + "summary", m.payload, qos=1)
        client.on_connect = lambda c, u, f, r, p: c.subscribe(*sub)
        client.connect(host, port)
        nodelay(client)
        client.loop_forever()
        return
    from qis_gateway.config import MqttSettings
    from qis_gateway.mqtt_client import MqttClient

    async def run() -> None:
        client = MqttClient(MqttSettings(host=host, port=port, client_id="bench-echo-client"), (sub,))
        client.start()
        while True:
            msg = await client.next_message()
            client.ack(msg)
            client.publish(msg.topic[:-2] + "summary", msg.payload, 1)

    asyncio.run(run())


def echo_run(kind: str, host: str, port: int, devices: list[tuple[str, bytes]], site: str,
             seconds: float) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, __file__, "--echo-server", kind, "--host", host, "--port", str(port)])
    try:
        time.sleep(1.5)
        load = Load(host, port, devices, site, prefix=ECHO_PREFIX)
        c0 = cpu_s(proc.pid)
        out = closed_loop(load, seconds)
        out["cpu_ms_per_reading"] = round((cpu_s(proc.pid) - c0) * 1000 / max(1, out["answered"]), 3)
        load.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return out


class Rig:
    """The system under test, with gateway 0 under strace and its counters at hand."""

    def __init__(self, workdir: Path, gateways: int, devices: int, protocol: str = "5",
                 count_fsyncs: bool = True) -> None:
        self.system = LocalSystem(SystemSpec(gateways=gateways, sites=1, boards=0, min_n=5), workdir)
        self.system.prepare()
        gw = self.system.gateways[0]
        registry = Registry(gw.registry_path)
        self.devices = [(r.device_id, r.secret) for r in (registry.add("load-%d" % i, gw.site) for i in range(devices))]
        registry.close()
        config = gw.dir / "gateway.toml"  # the harness paces the flusher; measure the gateway's default
        lines = [line for line in config.read_text().splitlines() if not line.startswith("flush_rate_per_s")]
        if protocol != "3.1.1":  # MQTT 5 lets the gateway open its receive window (mqtt_client.py)
            lines = [line + ("\nprotocol = \"%s\"" % protocol if line.strip() == "[mqtt]" else "") for line in lines]
        config.write_text("\n".join(lines) + "\n")
        self.fsync_log = workdir / "fsync.log"
        argv = [str(BIN / "qis-gateway"), "run", "--config", str(gw.dir / "gateway.toml")]
        # Debian package strace; without it (or with --no-fsync-count) no fsync counts
        self.strace = count_fsyncs and shutil.which("strace") is not None
        if self.strace:
            argv = ["strace", "-f", "-q", "--seccomp-bpf", "-e", "trace=fsync,fdatasync",
                    "-o", str(self.fsync_log)] + argv
        elif count_fsyncs:
            print("strace not installed: fsyncs are not counted", file=sys.stderr, flush=True)
        proc = self.system.procs.start(gw.name, argv)
        self.pid = child_pid(proc.pid) if self.strace else proc.pid
        for other in self.system.gateways[1:]:
            self.system.start_gateway(other.index)
        for g in self.system.gateways:
            self.system.wait_healthy(g.index)
        self.gw = gw
        self.filled = 0
        self.fill_refused = 0
        self.unreachable = 0  # /metrics reads that timed out (an overloaded gateway)
        self._last: dict[str, float] = {}

    def fsyncs(self) -> int:
        try:
            with open(self.fsync_log, "rb") as f:
                return sum(1 for line in f if b"fsync(" in line or b"fdatasync(" in line)
        except OSError:
            return 0

    def counters(self) -> dict[str, float]:
        m: dict[str, float] | None = None
        for _attempt in range(3):  # an overloaded gateway may answer /metrics late
            try:
                m = self.system.gateway_metrics(0)
                break
            except OSError:
                time.sleep(1.0)
        if m is None:  # counted as a finding of the point, the counters stay as last read
            self.unreachable += 1
            return dict(self._last, cpu_s=cpu_s(self.pid), fsyncs=self.fsyncs())
        out = {"cpu_s": cpu_s(self.pid), "fsyncs": self.fsyncs(),
                "outcomes": m.get('qis_gateway_messages_total{kind="outcome",outcome="accepted"}', 0.0),
                "stored": m.get("qis_gateway_packets_stored_total", 0.0),
                "depth": m.get("qis_gateway_outbox_depth", 0.0),
                "shed": sum(v for k, v in m.items() if k.startswith("qis_gateway_shed_total")),
                "shed_by": {k.split('"')[1]: v for k, v in m.items() if k.startswith("qis_gateway_shed_total{")},
                "dropped": m.get("qis_gateway_incoming_dropped_total", 0.0),
                "rejected_by": {k.split('"')[1]: v for k, v in m.items()
                                if k.startswith("qis_gateway_rejections_total{")},
                "fp_le": {k.split('"')[1]: v for k, v in m.items() if k.startswith("qis_gateway_fp_seconds_bucket")}}
        self._last = out
        return out

    def fill(self, packets: int) -> None:
        """Top the fp's exact address up to `packets` signed outcome packets (10 per signer)."""
        if packets <= self.filled:
            return
        asyncio.run(self._fill(self.filled, packets))
        self.filled = packets

    async def _fill(self, start: int, end: int) -> None:
        from nacl.signing import SigningKey
        from qis_gateway.backend import make_udp_swarm
        from qis_gateway.packets import OutcomePacket, encode

        fp = SCHEMA.fingerprint(READING)
        address = SCHEMA.level_addresses(fp.fields)[0]
        with tempfile.TemporaryDirectory(prefix="qis-fill-") as tmp:
            # From another loopback IP: holders pace new signers per source IP (storage_policy.py), and the
            # fill's many keys from 127.0.0.1 used up gateway 0's own admission at this address, so every put
            # of its outcomes there was refused (a quarter of the outbox retried for ever).
            swarm = make_udp_swarm((FILL_IP, 0), Path(tmp), [("127.0.0.1", self.gw.udp_port)], None)
            await swarm.start()
            keys = [SigningKey.generate() for _ in range((end + 9) // 10)]
            slots = asyncio.Semaphore(16)

            async def put(i: int) -> None:
                packet = OutcomePacket(address=address, schema_id=SCHEMA.schema_id, created_s=int(time.time()) - i,
                                       vector=tuple(fp.vector), label=("normal", "bearing_wear")[i % 2], value=float(i))
                async with slots:
                    try:
                        await swarm.put(address, encode(packet, keys[i // 10]))
                    except Exception as exc:  # e.g. beyond what a node keeps per address: counted
                        self.fill_refused += 1
                        if self.fill_refused == 1:
                            print("fill: a put was refused (%s)" % exc, file=sys.stderr, flush=True)

            await asyncio.gather(*(put(i) for i in range(start, end)))
            # It leaves (says goodbye) like a gateway shutting down: stopped without, it stayed in the
            # gateways' routing tables as a dead contact, and every later lookup and put waited on it
            # (a put's node lookup for half its 5 s deadline, 250-330 request timeouts a run): the
            # outcome runs measured that one dead peer, not storing (outcome-only 5-160 outcomes/s
            # stored; leaving: 360-500/s, 0 timeouts).
            await swarm.stop(graceful=True)

    def point(self, fn: Any, *args: Any, profile_s: float = 0.0) -> dict[str, Any]:
        """Run fn(*args) and add gateway CPU ms and fsyncs per answered reading / admitted outcome (and,
        with profile_s, a py-spy profile by component of its first profile_s seconds)."""
        before = self.counters()
        reset_peak_rss(self.pid)
        sampler = None
        if profile_s:
            sampler = Sampler(self.pid, profile_s, self.system.workdir / "profile.txt")
            sampler.start()
        out = fn(*args)
        after = self.counters()
        if sampler is not None:
            out["profile"] = sampler.result()
        readings = max(1, out.get("answered", 0) + int(after["outcomes"] - before["outcomes"]))
        out["cpu_ms_per_reading"] = round((after["cpu_s"] - before["cpu_s"]) * 1000 / readings, 3)
        out["fsyncs_per_reading"] = round((after["fsyncs"] - before["fsyncs"]) / readings, 2) if self.strace else None
        out["shed"] = int(after["shed"] - before["shed"])
        shed_by, was = after.get("shed_by", {}), before.get("shed_by", {})
        out["shed_by_reason"] = {k: int(v - was.get(k, 0.0)) for k, v in shed_by.items() if v > was.get(k, 0.0)}
        out["gateway_p99_le_s"] = gateway_p99(before.get("fp_le", {}), after.get("fp_le", {}))
        out["incoming_dropped"] = int(after["dropped"] - before["dropped"])
        rej, was_rej = after.get("rejected_by", {}), before.get("rejected_by", {})
        out["rejected_by_reason"] = {k: int(v - was_rej.get(k, 0.0)) for k, v in rej.items() if v > was_rej.get(k, 0.0)}
        if "offered_per_s" in out:  # every frame answered or told busy: none silently lost
            out["unaccounted"] = out["sent"] - out["answered"] - out["busy"]
        out["metrics_timeouts"] = self.unreachable
        # the unit caps the gateway at MemoryHigh=96M (deploy/qis-gateway.service): overload must stay under
        out["gateway_peak_rss_mb"] = peak_rss_mb(self.pid)
        return out

    def close(self) -> None:
        self.system.close()


def gateway_p99(before: dict[str, float], after: dict[str, float]) -> float | None:
    """The gateway's own p99 (fp arrival at the gateway -> summary published) as the upper bound of its
    histogram bucket, over the counts added between two reads: tells waits inside the gateway from
    waits before it (broker, sockets, the load generator)."""
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    if total <= 0:
        return None
    for le in sorted((k for k in after if k != "+Inf"), key=float):
        if after[le] - before.get(le, 0.0) >= 0.99 * total:
            return float(le)
    return float("inf")


def outcome_run(rig: Rig, load: Load, mode: str, seconds: float, profile: bool = False) -> dict[str, Any]:
    """mixed: closed loop fp + outcome per answered reading; outcome_only: outcomes for answered readings.
    With `profile`, py-spy profiles of gateway 0 and of gateway 1 (a holder of its packets) over the run."""
    samplers = {}
    if profile:
        peer = rig.system.procs.procs[rig.system.gateways[1].name].pid
        for key, pid in (("profile", rig.pid), ("profile_peer", peer)):
            samplers[key] = Sampler(pid, seconds, rig.system.workdir / ("%s-%s.txt" % (key, mode)))
            samplers[key].start()
    before = rig.counters()
    depth: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(0.5):
            depth.append((round(time.perf_counter() - t0, 1), rig.counters()["depth"]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if mode == "mixed":
        out = closed_loop(load, seconds, outcomes=True)
    else:
        with load.lock:
            backlog = list(load.answered_fps)
        t_end = t0 + seconds
        sent = 0
        for device, seq in backlog:
            if time.perf_counter() > t_end:
                break
            load.send_outcome(device, seq)
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.05)
        time.sleep(max(0.0, t_end - time.perf_counter()))
        out = {"sent": sent, "seconds": seconds, "answered": 0}
    mid = rig.counters()
    elapsed = time.perf_counter() - t0
    time.sleep(5.0)  # let the outbox drain a little; depth keeps being sampled
    sampler_stop.set()
    sampler.join()
    levels = len(SCHEMA.level_addresses(SCHEMA.fingerprint(READING).fields))
    out.update({"mode": mode, "outcomes_admitted_per_s": round((mid["outcomes"] - before["outcomes"]) / elapsed, 1),
                "outcomes_stored_per_s": round((mid["stored"] - before["stored"]) / levels / elapsed, 1),
                "packets_per_outcome": levels, "outbox_depth": depth,
                "cpu_ms_per_reading": round((mid["cpu_s"] - before["cpu_s"]) * 1000 / max(
                    1, out.get("answered", 0) + mid["outcomes"] - before["outcomes"]), 3),
                "fsyncs_per_reading": round((mid["fsyncs"] - before["fsyncs"]) / max(
                    1, out.get("answered", 0) + mid["outcomes"] - before["outcomes"]), 2)})
    if not rig.strace:
        out["fsyncs_per_reading"] = None
    for key, sampler in samplers.items():
        out[key] = sampler.result()
    return out


def offered_point(rig: Rig, load: Load, rate: int, seconds: float, profile: bool = False) -> dict[str, Any]:
    p = rig.point(open_loop, load, float(rate), seconds, profile_s=seconds if profile else 0.0)
    print("offered %d/s: %s" % (rate, json.dumps(p)), file=sys.stderr, flush=True)
    return p


def plot(doc: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # an optional extra (the bench's JSON is the result; the plot only shows it)
        print("no plot: matplotlib is not installed", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = doc.get("offered", [])
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    rates = [p["offered_per_s"] for p in points]
    ax.plot(rates, [p["p50_ms"] for p in points], "o-", label="p50")
    ax.plot(rates, [p["p99_ms"] for p in points], "x--", label="p99")
    ax.plot(rates, [p["answered_per_s"] for p in points], "s:", label="answered/s")
    ax.plot(rates, [max(0.1, p.get("busy_per_s", 0)) for p in points], "d:", label="told busy/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered fp readings/s (%d packets per address)" % doc["packets_offered"])
    ax.set_ylabel("fp publish -> summary (ms); readings/s")
    ax.legend(fontsize=8)
    ax.set_title("one gateway (%s, %s, shared machine)" % (time.strftime("%Y-%m-%d"), platform.machine()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    quick = args.quick
    rig = Rig(workdir, 3 if quick else 6, 32 if quick else 64, args.mqtt_protocol, not args.no_fsync_count)
    doc: dict[str, Any] = {"gateways": len(rig.system.gateways), "devices": len(rig.devices),
                           "gateway_mqtt_protocol": args.mqtt_protocol}
    host, port = rig.gw.broker.host, rig.gw.broker.port
    try:
        load = Load(host, port, rig.devices, rig.gw.site)
        seconds = args.seconds or (8.0 if quick else 10.0)
        repeats = 1 if quick else 3
        doc["closed_loop"] = []
        for packets in ([100] if quick else [5, 100, 1000]):
            rig.fill(packets)
            time.sleep(0.5)
            for r in range(repeats if packets == 100 else 1):
                p = rig.point(closed_loop, load, seconds, profile_s=seconds - 1 if args.profile and r == 0 else 0.0)
                p.update({"packets": packets, "repeat": r, "fill_refused": rig.fill_refused})
                print("closed loop: %s" % json.dumps(p), file=sys.stderr, flush=True)
                doc["closed_loop"].append(p)
        doc["low_load"] = rig.point(open_loop, load, 10.0, 4.0)  # one board's view: Nagle shows here
        print("10 readings/s: %s" % json.dumps(doc["low_load"]), file=sys.stderr, flush=True)
        echo_devices = [(d + "-echo", s) for d, s in rig.devices]
        doc["echo_paho"] = echo_run("paho", host, port, echo_devices, rig.gw.site, 5.0 if quick else seconds)
        doc["echo_client"] = echo_run("client", host, port, echo_devices, rig.gw.site, 5.0 if quick else seconds)
        print("echo: paho %s client %s" % (doc["echo_paho"], doc["echo_client"]), file=sys.stderr, flush=True)
        if quick and args.outcomes:
            doc["outcomes"] = [outcome_run(rig, load, mode, seconds, args.profile)
                               for mode in ("mixed", "outcome_only")]
            for p in doc["outcomes"]:
                print("outcomes %s: %s" % (p["mode"], json.dumps(p)), file=sys.stderr, flush=True)
        if quick and args.offered:
            doc["packets_offered"] = 100
            doc["offered"] = [offered_point(rig, load, rate, seconds, args.profile) for rate in args.offered]
        if not quick:  # outcomes first: the overload points leave a backlog behind
            doc["outcomes"] = []
            for mode in ("mixed", "outcome_only"):
                p = outcome_run(rig, load, mode, seconds)
                print("outcomes %s: %s" % (mode, json.dumps({k: v for k, v in p.items() if k != "outbox_depth"})),
                      file=sys.stderr, flush=True)
                doc["outcomes"].append(p)
            doc["packets_offered"] = 100
            doc["offered"] = []
            for rate in (100, 300, 1000, 3000):
                doc["offered"].append(offered_point(rig, load, rate, seconds))
        load.close()
    finally:
        rig.close()
    main_points = [p for p in doc["closed_loop"] if p["packets"] == 100]
    best = max(main_points, key=lambda p: p["readings_per_s"])
    doc.update({"readings_per_s": best["readings_per_s"], "cpu_ms_per_reading": best["cpu_ms_per_reading"],
                "p99_ms": best["p99_ms"], "fsyncs_per_reading": best["fsyncs_per_reading"],
                "low_load_p50_ms": doc["low_load"]["p50_ms"], "low_load_p99_ms": doc["low_load"]["p99_ms"],
                "echo_client_per_s": doc["echo_client"]["readings_per_s"],
                "echo_paho_per_s": doc["echo_paho"]["readings_per_s"]})
    return doc


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one closed-loop point at 100 packets per address")
    ap.add_argument("--outcomes", action="store_true", help="with --quick: the mixed and outcome-only runs too")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy profile by component of the first closed-loop run per packet count (with "
                         "--outcomes: of gateway 0 and gateway 1 over each outcome run)")
    ap.add_argument("--offered", type=lambda t: [int(r) for r in t.split(",")], default=[],
                    help="with --quick: also these offered rates (comma-separated readings/s)")
    ap.add_argument("--mqtt-protocol", choices=["3.1.1", "5"], default="5",
                    help="the gateway's MQTT version (5: it sets its own receive window; 3.1.1: the broker's 20)")
    ap.add_argument("--no-fsync-count", action="store_true",
                    help="gateway 0 without strace (fsyncs_per_reading null): strace costs it CPU (module docstring)")
    ap.add_argument("--seconds", type=float, default=0.0,
                    help="length of each closed-loop and offered run (default 8 with --quick, else 10)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gateway_throughput.json")
    ap.add_argument("--echo-server", choices=["paho", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.echo_server:
        echo_server(args.echo_server, args.host, args.port)
        return 0
    if args.profile and not available():
        ap.error("--profile needs py-spy (pip install py-spy into the venv)")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="qis-bench-gwtp-") as tmp:
        doc = run(args, Path(tmp))
    doc.update({"command": "bench/bench_gateway_throughput.py" + (" --quick" if args.quick else "")
                + (" --no-fsync-count" if args.no_fsync_count else ""),
                "started": started, "machine": {"python": platform.python_version(), "cpu": platform.machine(),
                                                "cores": os.cpu_count(), "shared": True}})
    if args.json:
        print(json.dumps(doc))
        if args.quick:
            return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, args.out.with_suffix(".png"))
    print("wrote %s" % args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
