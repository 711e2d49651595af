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


class Pacing:
    __slots__ = ("counters", "windows", "queues", "queued")

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters
        # Public so that the RPC layer's hot path tests membership inline (only these methods change them).
        self.windows: dict[Address, list[float]] = {}  # addr -> [window, start of its recovery period]
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
            w = self.windows[addr] = [max(MIN_WINDOW if busy else INITIAL_WINDOW, inflight / 2.0), now_s]
            if len(self.windows) > PEERS_KEPT:
                self._drop_oldest()
        elif sent_s > w[1]:
            w[0] = max(MIN_WINDOW, w[0] / 2.0)
            w[1] = now_s
        else:
            return
        self.counters["pacing_decreases"] += 1

    def answered(self, addr: Address) -> None:
        """An answer from a paced peer: additive increase."""
        w = self.windows.get(addr)
        if w is None:
            return
        w[0] += 1.0 / w[0]
        if w[0] >= OPEN_WINDOW and addr not in self.queues:
            del self.windows[addr]

    def _drop_oldest(self) -> None:
        for addr in self.windows:
            if addr not in self.queues:
                del self.windows[addr]
                return
