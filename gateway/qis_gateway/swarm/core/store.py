"""Value storage behind a swarm node: the ``ValueStore`` and ``PublishedSet`` protocols, in-memory versions.

How it works: a store holds, per 32-byte address, a set of opaque values (outcome packets), each with an
expiry time, in insertion order. The core owns the *policy* (caps, which value to evict, validation); a
store only carries it out. ``evict_for(address)`` removes the value at ``address`` that expires first
(ties: the oldest inserted); ``remove`` drops one named value; ``held`` lists an address's values for the
policy without counting as a read. ``SqliteValueStore`` (store_sqlite.py) is the durable twin.

Which address a full node takes from (``coldest_address``, issue 18 point 6) is a segmented LRU kept by
the store, O(1) per operation: addresses never read since they were first stored sit in a *probation*
list (oldest first), addresses a requester has read (``values``) in a *protected* list (least recently
read first). The coldest address is the first on probation, else the least recently read one: a flood
of fresh addresses nobody asks for evicts itself before it touches an address requesters use (the scan
resistance of SLRU/2Q caches). Before, a full node scanned every address for the largest (139 ms per
STORE at 100,000 values) and drained the busiest honest address to one value.

A published set holds the values this node originated, which the core re-stores (republishes). The core
reads it a slice at a time (``page``: addresses in ascending byte order after a cursor), so an
implementation may keep it on disk: ``PublishedValues`` (published.py) is the SQLite twin that
``UdpSwarm`` uses, so a gateway holds none of its own values in RAM.
"""

from __future__ import annotations

from bisect import bisect_right
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

    def held(self, address: bytes) -> list[bytes]:
        """All values at ``address`` in insertion order, for the storage policy (not counted as a read)."""
        ...

    def remove(self, address: bytes, value: bytes) -> bool:
        """Drop one value; False when it was not held."""
        ...

    def coldest_address(self) -> bytes | None:
        """The address a full node should take a value from (see the module docstring); None when empty."""
        ...

    def close(self) -> None: ...


class AddressHeat:
    """The segmented LRU of addresses behind ``coldest_address`` (shared by both stores)."""

    __slots__ = ("_probation", "_protected")

    def __init__(self) -> None:
        self._probation: dict[bytes, None] = {}  # never read, first stored first
        self._protected: dict[bytes, None] = {}  # read, least recently read first

    def stored(self, address: bytes) -> None:
        if address not in self._protected and address not in self._probation:
            self._probation[address] = None

    def read(self, address: bytes) -> None:
        if self._probation.pop(address, 0) is None or address in self._protected:
            self._protected.pop(address, None)
            self._protected[address] = None

    def gone(self, address: bytes) -> None:
        self._probation.pop(address, None)
        self._protected.pop(address, None)

    def coldest(self) -> bytes | None:
        for segment in (self._probation, self._protected):
            if segment:
                return next(iter(segment))
        return None

    def keep_only(self, present: dict[bytes, int]) -> None:
        for segment in (self._probation, self._protected):
            for address in [a for a in segment if a not in present]:
                del segment[address]
        for address in present:
            self.stored(address)

    def clear(self) -> None:
        self._probation.clear()
        self._protected.clear()


class MemoryValueStore:
    """Dict-backed ``ValueStore`` (tests, simulator, nodes without a data directory)."""

    __slots__ = ("_by_address", "_total", "_heat")

    def __init__(self) -> None:
        self._by_address: dict[bytes, dict[bytes, float]] = {}
        self._total = 0
        self._heat = AddressHeat()

    def add(self, address: bytes, value: bytes, now_s: float, expires_s: float) -> bool:
        held = self._by_address.get(address)
        if held is None:
            held = self._by_address[address] = {}
            self._heat.stored(address)
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
        self._heat.read(address)
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
                self._heat.gone(address)
        self._total -= dropped
        return dropped

    def evict_for(self, address: bytes) -> None:
        held = self._by_address.get(address)
        if not held:
            return
        victim = min(held, key=held.__getitem__)  # first minimum = oldest inserted among ties
        self.remove(address, victim)

    def addresses(self) -> list[bytes]:
        return list(self._by_address)

    def held(self, address: bytes) -> list[bytes]:
        held = self._by_address.get(address)
        return list(held) if held else []

    def remove(self, address: bytes, value: bytes) -> bool:
        held = self._by_address.get(address)
        if not held or held.pop(value, None) is None:
            return False
        self._total -= 1
        if not held:
            del self._by_address[address]
            self._heat.gone(address)
        return True

    def coldest_address(self) -> bytes | None:
        return self._heat.coldest()

    def close(self) -> None:
        self._by_address.clear()
        self._total = 0
        self._heat.clear()


class PublishedSet(Protocol):
    def add(self, address: bytes, value: bytes, now_s: float) -> None:
        """Record a value this node originated (a value already held is ignored); the set keeps its bound."""
        ...

    def discard(self, address: bytes, values: list[bytes]) -> None:
        """Forget values of ``address`` (ones no holder keeps any more: the republishing pass drops them)."""
        ...

    def count_addresses(self) -> int: ...

    def page(self, after: bytes | None, limit: int) -> list[tuple[bytes, list[bytes]]]:
        """Up to ``limit`` addresses in ascending order strictly after ``after`` (None: from the first),
        each with all its values."""
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class MemoryPublishedSet:
    """Dict-backed ``PublishedSet`` (the core's default: tests, simulator). At most ``max_values`` values:
    when a put goes over, the oldest address (first put) is forgotten whole, never the newest one."""

    __slots__ = ("max_values", "_by_address", "_count", "_sorted")

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._by_address: dict[bytes, dict[bytes, None]] = {}
        self._count = 0
        self._sorted: list[bytes] | None = None  # addresses in order, built when first paged

    def add(self, address: bytes, value: bytes, now_s: float) -> None:
        by_address = self._by_address
        held = by_address.get(address)
        if held is None:
            held = by_address[address] = {}
            self._sorted = None
        if value in held:
            return
        held[value] = None
        self._count += 1
        while self._count > self.max_values and len(by_address) > 1:
            self._count -= len(by_address.pop(next(iter(by_address))))
            self._sorted = None

    def discard(self, address: bytes, values: list[bytes]) -> None:
        held = self._by_address.get(address)
        if held is None:
            return
        for value in values:
            if value in held:
                del held[value]
                self._count -= 1
        if not held:
            del self._by_address[address]
            self._sorted = None

    def count_addresses(self) -> int:
        return len(self._by_address)

    def page(self, after: bytes | None, limit: int) -> list[tuple[bytes, list[bytes]]]:
        keys = self._sorted
        if keys is None:
            keys = self._sorted = sorted(self._by_address)
        start = 0 if after is None else bisect_right(keys, after)
        return [(a, list(self._by_address[a])) for a in keys[start : start + max(limit, 0)]]

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._by_address.clear()
        self._count = 0
        self._sorted = None
