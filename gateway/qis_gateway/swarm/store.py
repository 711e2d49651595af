"""Value storage behind a swarm node: the ``ValueStore`` protocol and an in-memory implementation.

How it works: a store holds, per 32-byte address, a set of opaque values (outcome packets), each with an
expiry time, in insertion order. The core owns the *policy* (caps, which value to evict, validation); a
store only carries it out. ``evict_for(address)`` removes the value at ``address`` that expires first
(ties: the oldest inserted). ``SqliteValueStore`` (store_sqlite.py) is the durable twin.
"""

from __future__ import annotations

from typing import Protocol


class ValueStore(Protocol):
    def add(self, address: bytes, value: bytes, now_s: float, expires_s: float) -> bool:
        """Store ``value``; False if it was already held (its expiry is then raised to ``expires_s``)."""
        ...

    def values(self, address: bytes, limit: int, offset: int = 0) -> list[bytes]: ...

    def count(self, address: bytes) -> int: ...

    def total(self) -> int: ...

    def expire(self, now_s: float) -> int:
        """Drop values whose expiry is <= now_s; returns how many were dropped."""
        ...

    def evict_for(self, address: bytes) -> None:
        """Drop the value at ``address`` that expires first (no-op when the address holds none)."""
        ...

    def addresses(self) -> list[bytes]: ...

    def close(self) -> None: ...


class MemoryValueStore:
    """Dict-backed ``ValueStore`` (tests, simulator, nodes without a data directory)."""

    __slots__ = ("_by_address", "_total")

    def __init__(self) -> None:
        self._by_address: dict[bytes, dict[bytes, float]] = {}
        self._total = 0

    def add(self, address: bytes, value: bytes, now_s: float, expires_s: float) -> bool:
        held = self._by_address.get(address)
        if held is None:
            held = self._by_address[address] = {}
        old = held.get(value)
        if old is not None:
            if expires_s > old:
                held[value] = expires_s
            return False
        held[value] = expires_s
        self._total += 1
        return True

    def values(self, address: bytes, limit: int, offset: int = 0) -> list[bytes]:
        held = self._by_address.get(address)
        if not held or limit <= 0:
            return []
        out = list(held)
        return out[offset : offset + limit]

    def count(self, address: bytes) -> int:
        held = self._by_address.get(address)
        return len(held) if held else 0

    def total(self) -> int:
        return self._total

    def expire(self, now_s: float) -> int:
        dropped = 0
        for address in list(self._by_address):
            held = self._by_address[address]
            dead = [v for v, exp in held.items() if exp <= now_s]
            for v in dead:
                del held[v]
            dropped += len(dead)
            if not held:
                del self._by_address[address]
        self._total -= dropped
        return dropped

    def evict_for(self, address: bytes) -> None:
        held = self._by_address.get(address)
        if not held:
            return
        victim = min(held, key=held.__getitem__)  # first minimum = oldest inserted among ties
        del held[victim]
        self._total -= 1
        if not held:
            del self._by_address[address]

    def addresses(self) -> list[bytes]:
        return list(self._by_address)

    def close(self) -> None:
        self._by_address.clear()
        self._total = 0
