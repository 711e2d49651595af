"""The AI4I replay through the real system: one `qis-gateway run` per site in one swarm, one emulated board
per site replaying that site's rows (board -> MQTT -> gateway -> swarm -> synthesis -> summary).

How it works: the rows are split over the sites by a seeded draw (data.split_sites) and written, one JSON
line per row with its true outcome, to each board's directory. Each board is the real device code under
the MicroPython unix port with the replay sensor (qis_device.replay): it fingerprints a row with the
AI4I schema (ai4i.json), publishes the fp and waits for its summary; the row's outcome is reported when
the board takes the next row (prequential: predicted first, learnt from after), at once (interval 0). The
gateways run the packaged defaults except for what `GATEWAY_SETTINGS` sets (the schema file, synthesis
settings chosen on the tuning seeds, the lookup limit and a faster outbox: see docs/usefulness.md).
The Observer on each site's broker records every fp, summary and outcome frame; scores are computed from
those frames only (summary `top` shares -> P(failure), outcome label -> truth).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qis_gateway.config import _toml_value
from qis_gateway.harness.observer import BoardLog
from qis_gateway.harness.system import BoardProc, GatewayProc, LocalSystem, SystemSpec
from qis_gateway.registry import Registry, board_config
from qis_gateway.usefulness.data import Row
from qis_gateway.usefulness.schema_ai4i import schema_path

log = logging.getLogger(__name__)

BOARD_HEAP = "96K"  # the emulator's default; the AI4I schema has 6 categorical and 6 continuous fields
SUMMARY_TIMEOUT_S = 60.0  # a board waits this long for a summary before reporting anyway (counted)


def gateway_settings(min_n: int, half_life_s: float, min_per_signer: int, lookup_limit: int,
                     level_policy: str) -> dict[str, dict[str, Any]]:
    return {
        "gateway": {"schemas": [str(schema_path())]},
        "synthesis": {"min_n": min_n, "half_life_s": half_life_s, "min_per_signer": min_per_signer, "top": 10,
                      "level_policy": level_policy},
        "swarm": {"lookup_limit": lookup_limit},
    }


@dataclass
class SiteResult:
    """What one site's board did, read off its broker: per row (in order) the summary and timings."""

    rows: list[Row]
    summaries: list[dict[str, Any] | None] = field(default_factory=list)
    labels_reported: list[str] = field(default_factory=list)
    prequential_violations: int = 0
    gateway_ms: list[int] = field(default_factory=list)  # each summary's own `ms` (its lookups and synthesis)
    round_trip_ms: list[float] = field(default_factory=list)  # fp seen on the broker -> its summary seen


class ReplaySystem(LocalSystem):
    """LocalSystem whose gateways get the replay's settings and whose boards replay recorded rows."""

    def __init__(self, sites_rows: list[list[Row]], workdir: Path, settings: dict[str, dict[str, Any]],
                 backend: str = "kademlia") -> None:
        super().__init__(SystemSpec(gateways=len(sites_rows), sites=len(sites_rows), boards=0, readings=0,
                                    interval_s=0.0, summary_timeout_s=SUMMARY_TIMEOUT_S, heap=BOARD_HEAP,
                                    backend=backend, queue_max=500, own_swarm_ips=True), workdir)
        self.sites_rows = sites_rows
        self.settings = settings

    def _write_gateway_config(self, gw: GatewayProc, bootstrap: Any = None) -> None:
        super()._write_gateway_config(gw, bootstrap)
        path = gw.dir / "gateway.toml"
        data = tomllib.loads(path.read_text())
        for section, values in self.settings.items():
            data.setdefault(section, {}).update(values)
        lines: list[str] = []
        for section, table in data.items():
            lines.append("[%s]" % section)
            lines += ["%s = %s" % (key, _toml_value(value)) for key, value in table.items()]
        path.write_text("\n".join(lines) + "\n")

    def start(self) -> ReplaySystem:
        super().start()
        self.wait_joined()
        return self

    def wait_joined(self, timeout_s: float = 60.0, restart_after_s: float = 5.0) -> None:
        """Every gateway has a swarm peer before any board starts. A node whose bootstrap peer was not yet
        listening when it started does not join later (seen once in a loaded run: one site answered n=0
        for minutes); such a gateway is restarted."""
        if len(self.gateways) < 2:
            return
        started = time.monotonic()
        restarted: set[int] = set()
        while True:
            alone = [gw.index for gw in self.gateways
                     if int(self.gateway_status(gw.index).get("peers") or 0) == 0]
            if not alone:
                return
            waited = time.monotonic() - started
            if waited > timeout_s:
                raise RuntimeError("gateway(s) %s did not join the swarm within %.0f s" % (alone, timeout_s))
            if waited > restart_after_s:
                for i in alone:
                    if i not in restarted:
                        log.warning("gw%d has no swarm peer; restarting it", i)
                        self.procs.stop(self.gateways[i].name)
                        self.start_gateway(i)
                        self.wait_healthy(i)
                        restarted.add(i)
            time.sleep(0.5)

    def prepare(self) -> ReplaySystem:
        super().prepare()
        for site, rows in enumerate(self.sites_rows):
            self.add_replay_board(site, rows)
        return self

    def add_replay_board(self, site: int, rows: list[Row]) -> BoardProc:
        gw = self.gateways[site]
        device = "board-%d" % site
        registry = Registry(gw.registry_path)
        try:
            record = registry.add(device, gw.site)
        finally:
            registry.close()
        bdir = self.workdir / "boards" / device
        bdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(schema_path(), bdir / "ai4i.json")
        with open(bdir / "rows.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps({**row.reading, "outcome": row.label}) + "\n")
        config = board_config(record, gw.broker.host, gw.broker.port, "ai4i.json", broker_user=None,
                              broker_password=None, sensor={"driver": "replay", "file": str(bdir / "rows.jsonl")},
                              interval_s=0, summary_timeout_s=SUMMARY_TIMEOUT_S, queue_max=self.spec.queue_max,
                              state_dir=str(bdir), reconnect_max_ms=self.spec.board_reconnect_max_ms)
        path = bdir / "device.json"
        path.write_text(json.dumps(config, indent=1))
        board = BoardProc(device, gw.site, site, bdir, path, record.secret)
        self.boards.append(board)
        return board

    def start_replay(self) -> None:
        for board in self.boards:
            # one reading more than rows: that last call reports the last row's outcome (qis_device.replay)
            self.start_board(board, readings=len(self.sites_rows[board.gateway]) + 1)

    def board_log(self, board: BoardProc) -> BoardLog:
        return self.observers[board.gateway].snapshot().get((board.site, board.device), BoardLog())

    def site_results(self) -> list[SiteResult]:
        return [read_site(self.board_log(b), self.sites_rows[b.gateway]) for b in self.boards]

    def boards_running(self) -> bool:
        return any(self.procs.alive("board-" + b.device) for b in self.boards)

    def outbox_pending(self) -> int:
        """Outcome packets still waiting in the gateways' outboxes (live, from /status)."""
        total = 0
        for gw in self.gateways:
            if self.procs.alive(gw.name):
                total += int(self.gateway_status(gw.index).get("queue_depth", 0) or 0)
        return total


def read_site(entry: BoardLog, rows: list[Row]) -> SiteResult:
    """Align one board's frames with its rows: the k-th fp (by seq) is the k-th row. The outcome labels
    the board reported must be the rows' labels in order (checked by the caller via labels_reported)."""
    result = SiteResult(rows)
    fp_seen: dict[int, float] = {}
    for seq, t in entry.fp:
        fp_seen.setdefault(seq, t)
    fp_seqs = sorted(fp_seen)
    summary_by_re: dict[int, tuple[dict[str, Any], float]] = {}
    for body, t in entry.summaries:
        re = body.get("re")
        if isinstance(re, int) and re not in summary_by_re:
            summary_by_re[re] = (body, t)
    outcome_by_re: dict[int, tuple[str, float]] = {}
    for _seq, re, label, t in entry.outcomes:
        outcome_by_re.setdefault(re, (label, t))
    for seq in fp_seqs[:len(rows)]:
        got = summary_by_re.get(seq)
        result.summaries.append(got[0] if got else None)
        if got is not None:
            if isinstance(got[0].get("ms"), int):
                result.gateway_ms.append(got[0]["ms"])
            result.round_trip_ms.append((got[1] - fp_seen[seq]) * 1000.0)
        outcome = outcome_by_re.get(seq)
        if outcome is not None:
            result.labels_reported.append(outcome[0])
            if got is None or got[1] > outcome[1]:
                result.prequential_violations += 1
    return result


def run_replay(sites_rows: list[list[Row]], workdir: Path, settings: dict[str, dict[str, Any]],
               tick: Callable[[ReplaySystem, float], None] | None = None,
               timeout_s: float = 1800.0) -> tuple[list[SiteResult], dict[str, Any]]:
    """Run the whole replay; returns each site's results and run figures (seconds, stored, rejected)."""
    system = ReplaySystem(sites_rows, workdir, settings)
    started = time.monotonic()
    try:
        system.start()
        up_s = time.monotonic() - started
        system.start_replay()
        deadline = started + timeout_s
        while system.boards_running() and time.monotonic() < deadline:
            if tick is not None:
                tick(system, time.monotonic() - started)
            time.sleep(1.0)
        boards_s = time.monotonic() - started
        codes = system.wait_boards(5.0)
        drain_deadline = time.monotonic() + 120.0
        while system.outbox_pending() > 0 and time.monotonic() < drain_deadline:
            time.sleep(0.5)
        results = system.site_results()
        figures = {
            "seconds": round(time.monotonic() - started, 1), "swarm_up_s": round(up_s, 1),
            "replay_s": round(boards_s - up_s, 1),
            "board_exit_codes_ok": all(c == 0 for c in codes.values()),
            "outcome_packets_stored": int(system.metric_sum("qis_gateway_packets_stored_total")),
            "outbox_pending": int(system.outbox_pending()),
            "rejected": int(system.metric_sum("qis_gateway_rejections_total")),
            "swarm_values": swarm_values(system),
        }
        return results, figures
    finally:
        system.close()


def swarm_values(system: ReplaySystem) -> int:
    """Values held in the swarm, summed over nodes (replicas counted), from each gateway's /status."""
    total = 0
    for gw in system.gateways:
        try:
            status = system.gateway_status(gw.index)
        except OSError:
            continue
        total += int(status.get("stored_packets", 0) or 0)
    return total
