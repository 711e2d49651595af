"""Re-bootstrap of a SwarmNode that ran low on contacts (issue 18 point 4).

How it works (``Rejoin`` owns the seeds and the rejoin deadline): below ``rejoin_below`` contacts (every
peer evicted, or a start that reached nobody) the node joins again (``JoinOp`` without refreshes)
through the seeds: the addresses ``bootstrap`` was given (at most ``MAX_SEEDS``) and the contacts it
lost lately (``Isolation.lost``), every ``rejoin_interval_s`` while the table stays that low. Nothing is
scheduled when there is no seed. ``watch`` (after request timeouts, cheap) schedules the first check
as soon as the table falls low rather than at the next maintenance tick.
"""

from __future__ import annotations

import math

from .config import SwarmConfig
from .isolation import Isolation
from .membership import JoinOp
from .requester import Address, Requester

MAX_SEEDS = 64


class Rejoin:
    __slots__ = ("req", "isolation", "config", "_seeds", "due_s")

    def __init__(self, req: Requester, isolation: Isolation) -> None:
        self.req = req
        self.isolation = isolation
        self.config: SwarmConfig = req.config
        self._seeds: dict[Address, None] = {}  # bootstrap addresses
        self.due_s = math.inf  # the next rejoin check (inf: none scheduled)

    def start(self, now_s: float) -> None:
        self.due_s = now_s + self.config.rejoin_interval_s if self._seeds else math.inf

    def remember_seeds(self, addrs: list[Address]) -> None:
        for a in addrs:
            self._seeds[a] = None
        while len(self._seeds) > MAX_SEEDS:
            del self._seeds[next(iter(self._seeds))]

    def _low(self) -> bool:
        return len(self.req.table) < self.config.rejoin_below and bool(self._seeds or self.isolation.lost)

    def watch(self, now_s: float) -> None:
        if self.due_s == math.inf and self._low():
            self.due_s = now_s + self.config.rejoin_interval_s

    def check(self, now_s: float) -> None:
        """At a tick: rejoin through the seeds when due and the table is still low."""
        cfg = self.config
        if not self._low():
            self.due_s = math.inf  # (nothing to rejoin through: no tick; evictions add seeds)
            return
        if self.due_s == math.inf:
            self.due_s = now_s + cfg.rejoin_interval_s
            return
        if now_s < self.due_s:
            return
        seeds = dict.fromkeys(list(self._seeds) + list(self.isolation.lost))
        for c in self.req.table.contacts():
            seeds.pop(c.addr, None)
        self.due_s = now_s + cfg.rejoin_interval_s
        if seeds:
            self.req.counters["rejoins"] += 1
            JoinOp(self.req, list(seeds), now_s, rejoin=True)
