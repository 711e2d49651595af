"""Deadlines of running operations: every get, put and node lookup finishes by its own deadline.

How it works: an operation registers ``(deadline_s, op)`` when it starts; the node asks
``next_deadline()`` for its timer and calls ``fire(req, now_s)`` when the timer is due. An operation
still running at its deadline has ``expire(req, now_s)`` called: it finishes with what it has (a get
with the values collected so far, a put with the replicas acknowledged so far) and sends nothing more
(the RPC layer re-sends no request of a finished operation). Operations that finished earlier are
dropped from the heap when they reach its top. The core never reads a clock: times come from the driver.
"""

from __future__ import annotations

import heapq
from typing import Any, Protocol


class Expirable(Protocol):
    done: bool

    def expire(self, req: Any, now_s: float) -> None: ...


class OpDeadlines:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expirable]] = []
        self._seq = 0

    def add(self, deadline_s: float, op: Expirable) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline_s, self._seq, op))

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire(self, req: Any, now_s: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now_s:
            _, _, op = heapq.heappop(heap)
            if not op.done:
                req.counters["ops_expired"] += 1
                op.expire(req, now_s)

    def __len__(self) -> int:
        return len(self._heap)
