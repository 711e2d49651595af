"""Issue 18 point 4, end to end: the same 10,000-reading burst at full speed through real `qis-gateway run`
processes and Mosquitto (the harness's generated config) keeps the gateway in the swarm.

The system: 3 gateways in one UDP swarm; gateway 0 (the one under the burst, with its own broker and 40
provisioned devices) listens on 127.0.0.2, so its peers' per-IP rate limiters see it apart from each
other (the harness otherwise lifts the limit because every node shares 127.0.0.1). Its peers admit
PEER_RATE requests/s from it, a fifth of the default: peers busy with their own boards, which the burst
overloads, so back-pressure (BUSY, pacing) is really exercised. Asserted, as the issue's goal says:
- >= 2 peers throughout the burst, sampled from /health every SAMPLE_S (a sample the loaded gateway does
  not answer within 2 s is counted, never read as 0 peers; at most half may be missed);
- the next outcome stored within 5 s after the burst (the burst ends when every reading got its summary
  or a "busy" error);
- after a graceful restart (SIGTERM, then start) the gateway is back in the swarm within 10 s of its
  start: >= 2 peers in /health and a reading whose summary came from a swarm lookup (hops >= 1).
Wall time about a minute on an idle 2-core machine; the burst itself is bounded by BURST_DEADLINE_S.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from qis.schema import load_schema
from qis_gateway.harness.system import LocalSystem, SystemSpec
from qis_gateway.registry import Registry

from .burst_load import BurstLoad, reading

REPO = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(str(REPO / "shared" / "qis" / "schemas" / "machine_health.json"))
READINGS = 10_000
DEVICES = 40
PEER_RATE = 100.0
SAMPLE_S = 0.25
BURST_DEADLINE_S = 120.0
STORED_WITHIN_S = 5.0
REJOIN_WITHIN_S = 10.0


def _get_json(port: int, path: str, timeout_s: float = 2.0) -> dict:
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout_s) as r:
        return json.loads(r.read())


def _health(port: int) -> dict:
    try:
        return _get_json(port, "/health")
    except urllib.error.HTTPError as exc:  # 503 still carries the JSON body
        return json.loads(exc.read())


def _configure(system: LocalSystem) -> None:
    """Gateway 0 on 127.0.0.2; its peers limit it to PEER_RATE requests/s."""
    gw0 = system.gateways[0]
    old, new = "127.0.0.1:%d" % gw0.udp_port, "127.0.0.2:%d" % gw0.udp_port
    for gw in system.gateways:
        path = gw.dir / "gateway.toml"
        text = path.read_text().replace(old, new)
        if gw.index:
            text = text.replace("rate_limit_per_s = 100000.0", "rate_limit_per_s = %.1f" % PEER_RATE)
        path.write_text(text)


class PeerWatch(threading.Thread):
    """Samples gateway 0's peer count from /health until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, int]] = []
        self.missed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            try:
                self.samples.append((time.monotonic(), int(_health(self.port)["peers"])))
            except (OSError, ValueError, KeyError):
                self.missed += 1


def _swarm_counters(system: LocalSystem, i: int) -> dict[str, int]:
    return _get_json(system.gateways[i].metrics_port, "/status", 10.0)["swarm"]["counters"]


def _stored(system: LocalSystem) -> float:
    return system.gateway_metrics(0).get("qis_gateway_packets_stored_total", 0.0)


@pytest.mark.slow
@pytest.mark.adversarial
@pytest.mark.timeout(300)
def test_a_full_speed_burst_keeps_the_gateway_in_the_swarm(tmp_path: Path) -> None:
    system = LocalSystem(SystemSpec(gateways=3, sites=1, boards=0, min_n=3), tmp_path)
    try:
        system.prepare()
        _configure(system)
        gw0 = system.gateways[0]
        registry = Registry(gw0.registry_path)
        devices = [(r.device_id, r.secret) for r in (registry.add("burst-%d" % i, gw0.site) for i in range(DEVICES))]
        registry.close()
        for i in (1, 2, 0):
            system.start_gateway(i)
        for i in (1, 2, 0):
            system.wait_healthy(i)
        deadline = time.monotonic() + 30
        while _health(gw0.metrics_port).get("peers", 0) < 2:
            assert time.monotonic() < deadline, "gateway 0 never found its 2 peers"
            time.sleep(0.2)
        load = BurstLoad(gw0.broker.host, gw0.broker.port, gw0.site, devices, SCHEMA)
        before = _swarm_counters(system, 0)
        lookups0 = system.gateway_metrics(0).get("qis_gateway_lookup_hops_count", 0.0)
        peers_before = [_swarm_counters(system, i) for i in (1, 2)]
        watch = PeerWatch(gw0.metrics_port)
        watch.start()

        # -- the burst: 10,000 readings from 40 devices, as fast as paho publishes them
        rng = random.Random(18)
        sent: set[tuple[str, int]] = set()
        t0 = time.monotonic()
        for i in range(READINGS):
            device = devices[i % DEVICES][0]
            sent.add((device, load.send_fp(device, reading(rng))))
        t_sent = time.monotonic()
        # An outcome sent as the last reading goes out (reported, not asserted: it queues behind the burst).
        stored0 = _stored(system)
        levels = len(SCHEMA.level_addresses(SCHEMA.fingerprint(reading(rng)).fields))
        with load.lock:
            early = sorted(load.answered)
        if early:
            load.send_outcome(early[0][0], early[0][1], "bearing_wear")
        while load.done(sent) < READINGS and time.monotonic() - t0 < BURST_DEADLINE_S:
            time.sleep(0.2)
        t_end = time.monotonic()
        watch.stop.set()
        watch.join()
        after = _swarm_counters(system, 0)
        refused = [_swarm_counters(system, i)["drop_rate_limited"] - b["drop_rate_limited"]
                   for i, b in zip((1, 2), peers_before, strict=True)]
        with load.lock:
            answered, busy = len(sent & load.answered), len(sent & load.busy)
        lowest = min((p for _, p in watch.samples), default=-1)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("sent", "received", "busy_in", "paced",
                                                                  "retries_held", "timeouts",
                                                                  "evictions_withheld", "contacts_evicted")}
        lookups = system.gateway_metrics(0).get("qis_gateway_lookup_hops_count", 0.0) - lookups0
        print("\nburst: published in %.1f s, done in %.1f s; %d answered, %d busy; peers min %d over %d samples "
              "(%d missed); gateway 0 swarm %s; %d lookups, %.2f datagrams sent per answered reading, %.2f per "
              "lookup; peers refused %s" % (t_sent - t0, t_end - t0, answered, busy, lowest, len(watch.samples),
                                            watch.missed, delta, lookups, delta["sent"] / max(1, answered),
                                            delta["sent"] / max(1, lookups), refused))
        assert answered + busy == READINGS, "readings left unanswered after %.0f s" % BURST_DEADLINE_S
        assert len(watch.samples) >= 4 and watch.missed <= len(watch.samples), "gateway 0 stopped answering /health"
        assert lowest >= 2, "gateway 0 fell to %d peers during the burst" % lowest

        expected = levels if early else 0
        while _stored(system) - stored0 < expected and time.monotonic() - t_sent < 30.0:
            time.sleep(0.1)
        print("outcome sent with the last reading: %d packets stored %.1f s later"
              % (_stored(system) - stored0, time.monotonic() - t_sent))

        # -- the next outcome, after the burst: stored within 5 s
        device, seq = sorted(load.answered)[-1]
        t_outcome = time.monotonic()
        load.send_outcome(device, seq, "bearing_wear")
        while _stored(system) - stored0 < expected + levels and time.monotonic() - t_outcome < 15.0:
            time.sleep(0.1)
        stored_s = time.monotonic() - t_outcome
        print("next outcome after the burst: %d packets stored in all, %.2f s after it was sent"
              % (_stored(system) - stored0, stored_s))
        assert stored_s <= STORED_WITHIN_S

        # -- graceful restart: back in the swarm within 10 s of its start
        assert system.procs.stop(gw0.name, 30) == 0
        t_start = time.monotonic()
        system.start_gateway(0)
        peers_s = lookup_s = None
        probe: set[tuple[str, int]] = set()
        while time.monotonic() - t_start < 30.0 and lookup_s is None:
            try:
                peers = _health(gw0.metrics_port).get("peers") or 0
            except OSError:
                peers = 0  # not listening yet
            if peers >= 2 and peers_s is None:
                peers_s = time.monotonic() - t_start
            if peers_s is not None:
                with load.lock:
                    hit = [k for k in probe if int(load.summaries.get(k, {}).get("hops", 0)) >= 1]
                if hit:
                    lookup_s = time.monotonic() - t_start
                    break
                probe.add((devices[0][0], load.send_fp(devices[0][0], reading(rng))))
            time.sleep(0.2)
        print("restart: %s peers after %s s, a swarm lookup answered after %s s"
              % (_health(gw0.metrics_port).get("peers"), peers_s and round(peers_s, 2),
                 lookup_s and round(lookup_s, 2)))
        assert peers_s is not None and peers_s <= REJOIN_WITHIN_S
        assert lookup_s is not None and lookup_s <= REJOIN_WITHIN_S
        load.close()
    finally:
        system.close()
