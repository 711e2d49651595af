"""What an operation may use of its node (the ``Requester`` interface) and the record of one request in
flight (``Pending``).

How it works: operations (ops.py, get.py, put.py, refresh.py, membership.py) never see the node or its private state.
They get a ``Requester``: read access to the node's id, config, random source, routing table, value
store and counters, and five actions: send a request (``request``; the reply or the timeout comes back
to the op's ``on_reply`` / ``on_timeout``, with the ``Pending`` record), send a one-way message, emit
an event, validate a value, set the op's own deadline (``add_deadline``, deadlines.py). ``SwarmNode``
implements it; the RPC layer (rpc.py) owns the requests in flight and their timers;
housekeeping (housekeeping.py) owns the maintenance deadlines.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from .config import SwarmConfig
from .events import SwarmEvent
from .lookup import Candidate
from .routing import RoutingTable
from .storage_policy import StoragePolicy
from .store import ValueStore

Address = tuple[str, int]


class Op(Protocol):
    """An operation waiting for replies; ``messages`` counts the requests it sent (retries included)."""

    messages: int

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None: ...

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None: ...


class Pending:
    """One request in flight. ``cand``: the lookup candidate asked (lookups); ``target``: the id a refresh's
    FIND_NODE asked for (None for its PINGs); ``page_offset``: a FIND_VALUE's offset (non-zero = a page
    of a known holder); ``counts_replica``: a STORE whose acknowledgement counts as one replica (the
    first chunk sent to a node)."""

    __slots__ = ("tid", "msg", "addr", "expected_id", "nonce", "op", "cand", "target", "page_offset",
                 "counts_replica", "sent_s", "deadline_s", "timeout_s", "attempts", "validations", "proof_msg", "busy")

    def __init__(self, tid: int, msg: Any, addr: Address, expected_id: bytes | None, nonce: bytes | None,
                 op: Op, sent_s: float, timeout_s: float, cand: Candidate | None = None,
                 target: int | None = None, page_offset: int = 0, counts_replica: bool = False) -> None:
        self.tid = tid
        self.msg = msg
        self.addr = addr
        self.expected_id = expected_id
        self.nonce = nonce
        self.op = op
        self.cand = cand
        self.target = target
        self.page_offset = page_offset
        self.counts_replica = counts_replica
        self.sent_s = sent_s
        self.timeout_s = timeout_s
        self.deadline_s = sent_s + timeout_s
        self.attempts = 1
        self.validations = 0  # PONGs that asked us to validate our address before answering (rpc.py)
        self.busy = False  # the peer answered BUSY: alive, shedding load (never evicted for this one)
        self.proof_msg: Any = None  # our PROOF for that; re-sent with a retry (it may be what was lost)


MakeRequest = Callable[[int, "bytes | None"], Any]  # (tid, nonce) -> request message


class Requester(Protocol):
    """The node as its operations see it."""

    node_id: bytes
    config: SwarmConfig
    rng: random.Random
    table: RoutingTable
    store: ValueStore
    storage: StoragePolicy
    counters: dict[str, int]

    def store_value(self, address: bytes, value: bytes, now_s: float, source: Address | None = None) -> bool: ...

    def request(self, make: MakeRequest, addr: Address, expected_id: bytes | None, now_s: float, op: Op, *,
                cand: Candidate | None = None, target: int | None = None, page_offset: int = 0,
                counts_replica: bool = False) -> None:
        """Send a request (tid and nonce chosen here); the answer or the timeout goes to ``op``."""

    def send_oneway(self, make: Callable[[int], Any], addr: Address) -> None:
        """Send a message that expects no answer (``make(tid)`` builds it)."""

    def signed_leave(self, recipient_id: bytes, tid: int) -> Any:
        """A LEAVE to ``recipient_id`` signed with the node's key (wire.leave_message)."""

    def emit(self, event: SwarmEvent) -> None:
        """Report an event to the driver (``SwarmNode.next_event``)."""

    def valid(self, address: bytes, value: bytes) -> bool:
        """Size cap and validator; a rejection is counted (``drop_invalid_value``)."""

    def inflight_to(self, addr: Address) -> bool:
        """A request to ``addr`` is awaiting its answer."""

    def add_deadline(self, deadline_s: float, op: Any) -> None:
        """Call ``op.expire(req, now_s)`` at ``deadline_s`` unless ``op.done`` by then (deadlines.py)."""
