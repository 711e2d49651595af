"""Per-contact pacing of our requests (issue 18 point 4): a peer that sheds load gets fewer requests from
us, not the same flood.

The model is TCP/QUIC NewReno congestion control (RFC 5681, RFC 9002 §7) applied per contact address,
counting requests instead of bytes:
- No window until the peer pushes back: a peer that never did is not paced and costs no state.
- Congestion signal: a BUSY answer, or a request that needed a retry (a loss). At the first signal the
  window becomes half the requests then in flight to that peer, at least ``MIN_WINDOW`` after a BUSY
  (the peer said it is overloaded) and ``INITIAL_WINDOW`` after a loss (QUIC's initial window: one lost
  PING does not throttle a healthy peer); later signals halve it, down to ``MIN_WINDOW``; at most once
  per recovery period: signals about requests sent before the last decrease do not decrease it again
  (RFC 9002 §7.3.2).
- Additive increase: every answer adds 1/window (one request per window's worth of answers), and the
  state is dropped once the window is back at ``OPEN_WINDOW`` with nothing queued.
- A retry due while the peer has more requests in flight than its window is skipped (the request waits
  out its doubled timeout, then fails as usual; its operation already moved on at the first timeout):
  a peer that sheds load gets no second copy of what it refused, since TCP too sends nothing beyond
  its window (``Rpc._expired``).
- Requests beyond the window wait in a per-peer queue, in order, and go out as answers or timeouts free
  room (self-clocking). A queued request of an operation that finished meanwhile is never sent. The
  queues hold at most ``MAX_QUEUED`` requests in all; beyond that a request goes out unpaced rather
  than being lost (an operation's deadline bounds the wait anyway).
- A queued request is not a silent wait: after the peer's adaptive timeout its op hears ``on_stall``
  (the lookup asks the next candidate), and when the peer answered nothing since it was queued (and did
  not answer BUSY lately), it fails as a sent request would (``held_failed``, ``Rpc._held_expired``).
  Before, requests queued to a peer that died behind its window were never sent, never timed out, and
  every lookup that met the dead peer waited for its op's deadline.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .requester import Address

MIN_WINDOW = 2.0
INITIAL_WINDOW = 10.0
OPEN_WINDOW = 64.0
PEERS_KEPT = 256
MAX_QUEUED = 4096


class Held:
    """A request waiting in a peer's queue (the arguments of ``Rpc.request``) since ``held_s``."""

    __slots__ = ("make", "addr", "expected_id", "op", "cand", "target", "page_offset", "counts_replica", "held_s",
                 "cancelled")

    def __init__(self, make: Any, addr: Address, expected_id: bytes | None, op: Any, cand: Any, target: int | None,
                 page_offset: int, counts_replica: bool, held_s: float) -> None:
        self.make = make
        self.addr = addr
        self.expected_id = expected_id
        self.op = op
        self.cand = cand
        self.target = target
        self.page_offset = page_offset
        self.counts_replica = counts_replica
        self.held_s = held_s
        self.cancelled = False  # it failed while queued: never sent


class Pacing:
    __slots__ = ("counters", "windows", "queues", "queued")

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters
        # Public so that the RPC layer's hot path tests membership inline (only these methods change them).
        # addr -> [window, start of its recovery period, its last answer]
        self.windows: dict[Address, list[float]] = {}
        self.queues: dict[Address, deque[Any]] = {}
        self.queued = 0

    def window(self, addr: Address) -> float | None:
        """The peer's window (requests in flight), or None when it is not paced."""
        w = self.windows.get(addr)
        return None if w is None else w[0]

    def room(self, addr: Address, inflight: int) -> bool:
        """A request to ``addr`` may go out now (nothing queued before it, and in-flight below its window)."""
        w = self.windows.get(addr)
        if w is None or self.queued >= MAX_QUEUED:
            return True
        return inflight < w[0] and addr not in self.queues

    def hold(self, addr: Address, item: Any) -> None:
        q = self.queues.get(addr)
        if q is None:
            q = self.queues[addr] = deque()
        q.append(item)
        self.queued += 1
        self.counters["paced"] += 1

    def release(self, addr: Address, inflight: int) -> Any:
        """The next queued request to ``addr`` when the window has room for it, else None."""
        q = self.queues.get(addr)
        if q is None:
            return None
        w = self.windows.get(addr)
        if w is not None and inflight >= w[0]:
            return None
        item = q.popleft()
        self.queued -= 1
        if not q:
            del self.queues[addr]
        return item

    def congested(self, addr: Address, sent_s: float, inflight: int, now_s: float, busy: bool) -> None:
        """A BUSY or a loss for a request sent at ``sent_s``: multiplicative decrease (module docstring)."""
        w = self.windows.get(addr)
        if w is None:
            w = self.windows[addr] = [max(MIN_WINDOW if busy else INITIAL_WINDOW, inflight / 2.0), now_s, -1.0e18]
            if len(self.windows) > PEERS_KEPT:
                self._drop_oldest()
        elif sent_s > w[1]:
            w[0] = max(MIN_WINDOW, w[0] / 2.0)
            w[1] = now_s
        else:
            return
        self.counters["pacing_decreases"] += 1

    def answered(self, addr: Address, now_s: float = 0.0) -> None:
        """An answer from a paced peer: additive increase."""
        w = self.windows.get(addr)
        if w is None:
            return
        w[0] += 1.0 / w[0]
        w[2] = now_s
        if w[0] >= OPEN_WINDOW and addr not in self.queues:
            del self.windows[addr]

    def silent_since(self, addr: Address, t_s: float) -> bool:
        """The paced peer answered nothing since ``t_s``."""
        w = self.windows.get(addr)
        return w is not None and w[2] < t_s

    def _drop_oldest(self) -> None:
        for addr in self.windows:
            if addr not in self.queues:
                del self.windows[addr]
                return
