"""The whole system on one machine: G gateways (each a site with its own broker), B emulated boards.

How it works: every gateway is a real `qis-gateway run` process with its own Mosquitto (the embedded
amqtt broker where Mosquitto is absent), as each site's Raspberry Pi would run them; all gateways form
one swarm over real UDP on 127.0.0.1, or each on a loopback IP of its own with `own_swarm_ips` (gateway 0
is everyone's bootstrap). Boards are spread over the first `sites` gateways and run the real device code
under the MicroPython unix port (`qis-device emulate`, `-X heapsize=HEAP`), or on real boards when the
caller passes serial ports. An Observer on each site broker keeps score (see observer.py). `close()` (and
the context manager) stops every process.

Layout under `workdir`: gw<i>/ (gateway.toml, data, keys), broker<i>/, boards/<device>/ (device.json,
board state), logs/ (one log per process).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qis_gateway.harness.broker import Broker, pick_port, start_broker
from qis_gateway.harness.observer import Observer
from qis_gateway.harness.procs import ProcessGroup
from qis_gateway.keys import generate_key_file
from qis_gateway.registry import Registry, board_config

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
# The emulated boards' MicroPython heap (-X heapsize). The device code runs 1,000 readings at 64K (its
# minimum as .mpy on the 64-bit unix port, docs/device.md), but these boards report an outcome per reading
# and go through broker restarts: the harshest outage measured passed at 68K in 3 of 3 runs, at 67K in 2
# (below, answers are dropped and counted as mem_drops, never readings).
DEFAULT_HEAP = "68K"
MACHINE_CLASSES = ("pump", "fan", "compressor", "conveyor")
# What the simulated boards later report for each vibration zone (ISO 10816 A..D): the demo's ground truth.
SIM_OUTCOMES = {"field": "vibration_band",
                "labels": {"A": "normal", "B": "normal", "C": "bearing_wear", "D": "bearing_failure"}}


def free_udp_port() -> int:
    return pick_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    return pick_port(socket.SOCK_STREAM)


@dataclass
class SystemSpec:
    gateways: int = 4
    sites: int = 2
    boards: int = 4
    readings: int = 10
    interval_s: float = 1.0
    summary_timeout_s: float = 3.0
    heap: str = DEFAULT_HEAP
    backend: str = "kademlia"
    min_n: int = 3
    trust: bool = False  # permissioned swarm: every gateway trusts exactly the others' keys
    queue_max: int = 200
    board_reconnect_max_ms: int = 2000  # boards default to 30 s; a test rig wants them back quickly
    sensor_mode: str = "random"  # the simulated sensor: "random" situations, or "cycle" through all of them
    # Each gateway's swarm node on a loopback IP of its own (127.0.0.10 + index), as sites are in the field:
    # the holders' per-source limits (new signers per IP, rate limit) then see one gateway per source.
    own_swarm_ips: bool = False


@dataclass
class GatewayProc:
    index: int
    site: str
    dir: Path
    udp_port: int
    metrics_port: int
    broker: Broker
    public_key: bytes
    registry_path: Path
    swarm_host: str = "127.0.0.1"

    @property
    def name(self) -> str:
        return "gw%d" % self.index


@dataclass
class BoardProc:
    device: str
    site: str
    gateway: int
    dir: Path
    config_path: Path
    secret: bytes
    extra: dict[str, Any] = field(default_factory=dict)


class LocalSystem:
    def __init__(self, spec: SystemSpec, workdir: Path) -> None:
        if not 1 <= spec.sites <= spec.gateways:
            raise ValueError("sites must be between 1 and the number of gateways (%d)" % spec.gateways)
        self.spec = spec
        self.workdir = Path(workdir)
        self.procs = ProcessGroup(self.workdir / "logs")
        self.gateways: list[GatewayProc] = []
        self.boards: list[BoardProc] = []
        self.observers: dict[int, Observer] = {}

    # -- set-up --------------------------------------------------------------------------------------

    def prepare(self) -> LocalSystem:
        """Brokers, keys, registries, configs (nothing of ours runs yet)."""
        for i in range(self.spec.gateways):
            gdir = self.workdir / ("gw%d" % i)
            gdir.mkdir(parents=True, exist_ok=True)
            key = generate_key_file(gdir / "gateway.key")
            broker = start_broker(self.workdir / ("broker%d" % i))
            host = "127.0.0.%d" % (10 + i) if self.spec.own_swarm_ips else "127.0.0.1"
            self.gateways.append(GatewayProc(i, "site-%d" % i, gdir, free_udp_port(), free_tcp_port(), broker,
                                             bytes(key.verify_key), gdir / "registry.sqlite", host))
        for gw in self.gateways:
            self._write_gateway_config(gw)
        for b in range(self.spec.boards):
            self.add_board("board-%d" % b, b % self.spec.sites, seed=b + 1)
        return self

    def _write_gateway_config(self, gw: GatewayProc, bootstrap: Iterable[int] | None = None) -> None:
        boot = list(bootstrap) if bootstrap is not None else ([0] if gw.index else [])
        if gw.index == 0 and len(self.gateways) > 1:
            boot = [1]
        trusted = [g.public_key.hex() for g in self.gateways] if self.spec.trust else []
        text = "\n".join([
            "[gateway]",
            "data_dir = %s" % json.dumps(str(gw.dir)),
            "trusted_keys = %s" % json.dumps(trusted),
            "[mqtt]",
            "host = %s" % json.dumps(gw.broker.host),
            "port = %d" % gw.broker.port,
            "client_id = %s" % json.dumps("qis-gateway-%d" % gw.index),
            "reconnect_min_s = 0.1",
            "reconnect_max_s = 1.0",
            "[swarm]",
            "backend = %s" % json.dumps(self.spec.backend),
            "listen = %s" % json.dumps("%s:%d" % (gw.swarm_host, gw.udp_port)),
            "bootstrap = %s" % json.dumps(["%s:%d" % (self.gateways[j].swarm_host, self.gateways[j].udp_port)
                                           for j in boot]),
            "rate_limit_per_s = 100000.0",  # nodes may share 127.0.0.1
            "[synthesis]",
            "min_n = %d" % self.spec.min_n,
            "[outbox]",
            "retry_min_s = 0.2",
            "retry_max_s = 2.0",
            "flush_rate_per_s = 200.0",
            "[metrics]",
            "listen = %s" % json.dumps("127.0.0.1:%d" % gw.metrics_port),
            "[log]",
            "level = \"INFO\"",
            "reject_interval_s = 5.0",
            "",
        ])
        (gw.dir / "gateway.toml").write_text(text)

    def add_board(self, device: str, gateway: int, seed: int = 1, secret: bytes | None = None,
                  machine_class: str | None = None, **extra: Any) -> BoardProc:
        gw = self.gateways[gateway]
        registry = Registry(gw.registry_path)
        try:
            record = registry.get(device) or registry.add(device, gw.site, secret=secret)
        finally:
            registry.close()
        bdir = self.workdir / "boards" / device
        bdir.mkdir(parents=True, exist_ok=True)
        config = board_config(
            record, gw.broker.host, gw.broker.port, "machine_health.json", broker_user=None, broker_password=None,
            fixed={"machine_class": machine_class or MACHINE_CLASSES[seed % len(MACHINE_CLASSES)]},
            sensor={"driver": "sim", "seed": seed, "mode": self.spec.sensor_mode}, interval_s=self.spec.interval_s,
            summary_timeout_s=self.spec.summary_timeout_s, queue_max=self.spec.queue_max,
            state_dir=str(bdir), sim_outcome=SIM_OUTCOMES,
            **{"reconnect_max_ms": self.spec.board_reconnect_max_ms, **extra})
        if secret is not None:
            config["secret"] = secret.hex()
        path = bdir / "device.json"
        path.write_text(json.dumps(config, indent=1))
        board = BoardProc(device, gw.site, gateway, bdir, path, record.secret, extra)
        self.boards.append(board)
        return board

    # -- running -------------------------------------------------------------------------------------

    def start_gateway(self, i: int, env: dict[str, str] | None = None) -> None:
        gw = self.gateways[i]
        self.procs.start(gw.name, [str(BIN / "qis-gateway"), "run", "--config", str(gw.dir / "gateway.toml")],
                         env=env)

    def start_gateways(self, timeout_s: float = 60.0) -> None:
        for gw in self.gateways:
            self.start_gateway(gw.index)
        for gw in self.gateways:
            self.wait_healthy(gw.index, timeout_s)

    def wait_healthy(self, i: int, timeout_s: float = 60.0) -> dict[str, Any]:
        gw = self.gateways[i]
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if not self.procs.alive(gw.name):
                raise RuntimeError("%s exited:\n%s" % (gw.name, self.procs.log_text(gw.name)[-3000:]))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % gw.metrics_port, timeout=2) as r:
                    return json.loads(r.read())
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError("%s not healthy within %.0f s (%s):\n%s" % (gw.name, timeout_s, last,
                                                                    self.procs.log_text(gw.name)[-3000:]))

    def start_observers(self) -> None:
        for i in range(self.spec.sites):
            gw = self.gateways[i]
            self.observers[i] = Observer(gw.broker.host, gw.broker.port, "qis-observer-%d" % i).start()

    def start_board(self, board: BoardProc, readings: int | None = None) -> None:
        n = self.spec.readings if readings is None else readings
        self.procs.start("board-" + board.device, [
            str(BIN / "qis-device"), "emulate", "--config", str(board.config_path), "--heap", self.spec.heap,
            "--readings", str(n)])

    def start_boards(self, boards: Iterable[BoardProc] | None = None, readings: int | None = None) -> None:
        for board in (self.boards if boards is None else boards):
            self.start_board(board, readings)

    def wait_boards(self, timeout_s: float, boards: Iterable[BoardProc] | None = None) -> dict[str, int]:
        """Wait for board processes to finish; their exit codes by device."""
        codes = {}
        deadline = time.monotonic() + timeout_s
        for board in (self.boards if boards is None else boards):
            name = "board-" + board.device
            codes[board.device] = self.procs.wait(name, max(0.1, deadline - time.monotonic()))
        return codes

    def start(self) -> LocalSystem:
        self.prepare()
        self.start_gateways()
        self.start_observers()
        return self

    # -- questions -----------------------------------------------------------------------------------

    def gateway_status(self, i: int) -> dict[str, Any]:
        gw = self.gateways[i]
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % gw.metrics_port, timeout=5) as r:
            return json.loads(r.read())

    def gateway_metrics(self, i: int) -> dict[str, float]:
        """Prometheus samples of one gateway, as {'name{label="v",...}': value}."""
        from prometheus_client.parser import text_string_to_metric_families

        gw = self.gateways[i]
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % gw.metrics_port, timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join('%s="%s"' % kv for kv in sorted(sample.labels.items()))
                out["%s{%s}" % (sample.name, labels) if labels else sample.name] = sample.value
        return out

    def metric_sum(self, prefix: str, gateways: Iterable[int] | None = None) -> float:
        total = 0.0
        for i in (range(len(self.gateways)) if gateways is None else gateways):
            if not self.procs.alive(self.gateways[i].name):
                continue
            total += sum(v for k, v in self.gateway_metrics(i).items() if k.startswith(prefix))
        return total

    def observer_for(self, board: BoardProc) -> Observer:
        return self.observers[board.gateway]

    # -- teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        for obs in self.observers.values():
            try:
                obs.stop()
            except Exception:  # teardown goes on whatever one part did
                log.exception("observer stop failed")
        self.procs.close()
        for gw in self.gateways:
            gw.broker.kill()

    def __enter__(self) -> LocalSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
