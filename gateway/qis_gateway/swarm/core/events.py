"""Events a ``SwarmNode`` reports through ``next_event()`` (immutable values)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GetDone:
    """A ``start_get`` finished. ``ok`` = the lookup completed (even with zero values); ``hops`` = sequential
    request depth until the first answer holding values (or until the lookup ended when none did);
    ``messages`` = requests this lookup sent; times are seconds since ``start_get``."""

    op_id: int
    address: bytes
    values: tuple[bytes, ...]
    hops: int
    messages: int
    first_value_s: float | None
    elapsed_s: float
    ok: bool


@dataclass(frozen=True, slots=True)
class PutDone:
    """A ``start_put`` finished. ``replicas`` = remote nodes that acknowledged storing the value."""

    op_id: int
    address: bytes
    replicas: int
    hops: int
    messages: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class JoinDone:
    """``bootstrap`` finished: ``contacts`` = proven contacts now in the routing table."""

    contacts: int


@dataclass(frozen=True, slots=True)
class LeaveDone:
    """``leave`` finished handing values over: ``values_handed`` values were sent to remaining nodes.
    The driver may close the socket after this event."""

    values_handed: int


SwarmEvent = GetDone | PutDone | JoinDone | LeaveDone
