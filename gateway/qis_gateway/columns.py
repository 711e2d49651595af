"""Columnar store of one address's verified packets, so synthesis is a few array operations.

How it works
------------
`PacketColumns` keeps, for one keyspace address, parallel numpy arrays with spare capacity (doubling
on growth, so appending is amortised O(1)):

    vectors  (n, d) float64  each packet's int8 vector (exact in float64, so dot products are exact)
    inv_norm (n,)   float64  1 / L2 norm of the vector, 0 for a zero vector (which has no direction)
    codes    (n,)   int32    label code; `labels[code]` is the label text
    weights  (n,)   float64  the packet's own weight (origin confidence) in (0, 1]
    times    (n,)   float64  created_s
    values   (n,)   float64  outcome value, NaN where the packet has none

With the norms inverted once at append time, a query's cosine similarity is one matrix-vector product
and one multiplication; the dot product of integer vectors is exact, so orthogonal vectors give exactly 0
and the sign of a similarity is never a rounding artefact.
Only verified packets (those carrying a packet id, i.e. returned by `packets.verify`) are accepted,
so an unsigned or forged packet cannot be counted; duplicates (same packet id) are ignored; a packet
for another address or with another vector length is refused with PacketError.

`PacketColumns.reusing(packets, address, previous)` builds the store for a new selection of an address
whose previous store is at hand (the gateway looks the same addresses up again and again): rows of
packets already in `previous` are copied from its arrays, only the new packets are converted, and the
rows are in `packets` order, so the arrays (and every sum synthesis takes over them) are bit for bit those
of `from_packets(packets)`; when the selection did not change at all, `previous` itself is returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from qis_gateway.packets import OutcomePacket, PacketError


class PacketColumns:
    """Verified packets of one address in columns. `address=None` accepts any address (tests, benches)."""

    def __init__(self, address: bytes | None = None, dims: int | None = None, capacity: int = 64) -> None:
        self.address = address
        self.dims = dims
        self.labels: list[str] = []
        self._label_codes: dict[str, int] = {}
        self._ids: dict[bytes, int] = {}  # packet id -> row, inserted in row order
        self._n = 0
        self._capacity = 0
        self._allocate(max(1, capacity), dims or 0)

    def _allocate(self, capacity: int, dims: int) -> None:
        n = self._n

        def grow(old: np.ndarray | None, shape: tuple[int, ...], dtype: type, fill: float = 0) -> np.ndarray:
            new = np.full(shape, fill, dtype=dtype)
            if old is not None and n:
                new[:n] = old[:n]
            return new

        first = self._capacity == 0
        self.vectors_all = grow(None if first else self.vectors_all, (capacity, dims), np.float64)
        self.inv_norm_all = grow(None if first else self.inv_norm_all, (capacity,), np.float64)
        self.codes_all = grow(None if first else self.codes_all, (capacity,), np.int32)
        self.weights_all = grow(None if first else self.weights_all, (capacity,), np.float64)
        self.times_all = grow(None if first else self.times_all, (capacity,), np.float64)
        self.values_all = grow(None if first else self.values_all, (capacity,), np.float64, np.nan)
        self._capacity = capacity

    def __len__(self) -> int:
        return self._n

    def __contains__(self, packet_id: bytes) -> bool:
        return packet_id in self._ids

    # Views of the filled part (no copies).
    @property
    def vectors(self) -> np.ndarray:
        return self.vectors_all[: self._n]

    @property
    def inv_norm(self) -> np.ndarray:
        return self.inv_norm_all[: self._n]

    @property
    def codes(self) -> np.ndarray:
        return self.codes_all[: self._n]

    @property
    def weights(self) -> np.ndarray:
        return self.weights_all[: self._n]

    @property
    def times(self) -> np.ndarray:
        return self.times_all[: self._n]

    @property
    def values(self) -> np.ndarray:
        return self.values_all[: self._n]

    def append(self, packet: OutcomePacket) -> bool:
        """Add one verified packet; False when it is already here (same packet id)."""
        if not isinstance(packet, OutcomePacket):
            raise PacketError("type", "expected an OutcomePacket, got %s" % type(packet).__name__)
        if not packet.verified:
            raise PacketError("unverified", "only packets returned by verify() may be counted (unsigned packet)")
        if self.address is not None and packet.address != self.address:
            raise PacketError("address", "packet belongs to another address than this column store")
        packet_id = packet.packet_id
        if packet_id in self._ids:
            return False
        dims = len(packet.vector)
        if self.dims is None:
            self.dims = dims
            if self._n == 0:
                self._allocate(self._capacity, dims)
        elif dims != self.dims:
            raise PacketError("field", "packet vector has %d dimensions, this address holds %d" % (dims, self.dims))
        if self._n == self._capacity:
            self._allocate(self._capacity * 2, self.dims)
        i = self._n
        self.vectors_all[i] = packet.vector
        squares = sum(c * c for c in packet.vector)
        self.inv_norm_all[i] = 1.0 / math.sqrt(squares) if squares else 0.0
        code = self._label_codes.get(packet.label)
        if code is None:
            code = self._label_codes[packet.label] = len(self.labels)
            self.labels.append(packet.label)
        self.codes_all[i] = code
        self.weights_all[i] = packet.weight
        self.times_all[i] = packet.created_s
        self.values_all[i] = np.nan if packet.value is None else packet.value
        self._ids[packet_id] = i
        self._n = i + 1
        return True

    def extend(self, packets: Iterable[OutcomePacket]) -> int:
        """Append many at once (a few array operations); returns how many were new. All or nothing:
        if any packet is refused, none is added."""
        fresh: list[OutcomePacket] = []
        seen: set[bytes] = set()
        for packet in packets:
            if not isinstance(packet, OutcomePacket):
                raise PacketError("type", "expected an OutcomePacket, got %s" % type(packet).__name__)
            packet_id = packet.verified_id
            if packet_id is None:
                raise PacketError("unverified", "only packets returned by verify() may be counted (unsigned packet)")
            if self.address is not None and packet.address != self.address:
                raise PacketError("address", "packet belongs to another address than this column store")
            if packet_id not in self._ids and packet_id not in seen:
                seen.add(packet_id)
                fresh.append(packet)
        if not fresh:
            return 0
        dims = self.dims if self.dims is not None else len(fresh[0].vector)
        if any(len(p.vector) != dims for p in fresh):
            raise PacketError("field", "packet vectors must all have %d dimensions at this address" % dims)
        if self.dims is None:
            self.dims = dims
            if self._n == 0:
                self._allocate(self._capacity, dims)
        k, n = len(fresh), self._n
        if n + k > self._capacity:
            self._allocate(max(2 * self._capacity, n + k), dims)
        block = np.array([p.vector for p in fresh], dtype=np.float64).reshape(k, dims)
        squares = np.einsum("ij,ij->i", block, block)
        self.vectors_all[n : n + k] = block
        self.inv_norm_all[n : n + k] = 0.0
        np.divide(1.0, np.sqrt(squares), out=self.inv_norm_all[n : n + k], where=squares > 0.0)
        codes = self._label_codes
        for p in fresh:
            if p.label not in codes:
                codes[p.label] = len(self.labels)
                self.labels.append(p.label)
        self.codes_all[n : n + k] = np.fromiter((codes[p.label] for p in fresh), np.int32, k)
        self.weights_all[n : n + k] = np.fromiter((p.weight for p in fresh), np.float64, k)
        self.times_all[n : n + k] = np.fromiter((p.created_s for p in fresh), np.float64, k)
        self.values_all[n : n + k] = np.fromiter((np.nan if p.value is None else p.value for p in fresh), np.float64, k)
        for row, p in enumerate(fresh, n):
            self._ids[p.packet_id] = row
        self._n = n + k
        return k

    @property
    def packet_ids(self) -> frozenset[bytes]:
        return frozenset(self._ids)

    def row_ids(self) -> list[bytes]:
        """The packet ids in row order."""
        ids: list[bytes] = [b""] * self._n
        for packet_id, row in self._ids.items():
            ids[row] = packet_id
        return ids

    @classmethod
    def from_packets(cls, packets: Iterable[OutcomePacket], address: bytes | None = None) -> PacketColumns:
        packets = list(packets)
        columns = cls(address, capacity=max(1, len(packets)))
        columns.extend(packets)
        return columns

    @classmethod
    def reusing(cls, packets: Iterable[OutcomePacket], address: bytes | None,
                previous: PacketColumns | None) -> PacketColumns:
        """`from_packets(packets, address)`, reusing the rows `previous` holds (module docstring)."""
        packets = list(packets)
        ids = [p.verified_id for p in packets]
        if packets and previous is not None and previous.address == address and ids == list(previous._ids):
            # the same packets in the same order (`_ids` keys are in row order); the warm path of every
            # reading within the lookup cache's second, so one list comparison instead of a check per row
            return previous
        if (not packets or previous is None or previous.address != address or previous.dims is None or None in ids
                or len(set(ids)) != len(ids)):
            return cls.from_packets(packets, address)  # refusals and duplicates: the plain path's rules
        old = previous._ids
        if len(ids) == previous._n and all(old.get(i) == row for row, i in enumerate(ids)):
            return previous  # the same packets in the same order
        positions = [row for row, i in enumerate(ids) if i not in old]
        fresh = cls.from_packets([packets[row] for row in positions], address) if positions else None
        if fresh is not None and fresh.dims != previous.dims:
            raise PacketError("field", "packet vectors must all have %d dimensions at this address" % previous.dims)
        columns = cls(address, previous.dims, capacity=max(1, len(packets)))
        columns._take_rows(packets, ids, previous, fresh, positions)
        return columns

    def _take_rows(self, packets: list[OutcomePacket], ids: list[bytes], previous: PacketColumns,
                   fresh: PacketColumns | None, positions: list[int]) -> None:
        """Fill this empty store: rows `positions` from `fresh` (in order), the others from `previous`."""
        k, old = len(packets), previous._ids
        if fresh is None:
            take = np.fromiter((old[i] for i in ids), np.intp, k)
            at: slice | np.ndarray = slice(0, k)
        else:
            kept = [row for row, i in enumerate(ids) if i in old]
            take = np.fromiter((old[ids[row]] for row in kept), np.intp, len(kept))
            at = np.array(kept, dtype=np.intp)
            where = np.array(positions, dtype=np.intp)
            self.vectors_all[where] = fresh.vectors
            self.inv_norm_all[where] = fresh.inv_norm
            self.weights_all[where] = fresh.weights
            self.times_all[where] = fresh.times
            self.values_all[where] = fresh.values
        self.vectors_all[at] = previous.vectors_all[take]
        self.inv_norm_all[at] = previous.inv_norm_all[take]
        self.weights_all[at] = previous.weights_all[take]
        self.times_all[at] = previous.times_all[take]
        self.values_all[at] = previous.values_all[take]
        codes = self._label_codes
        for p in packets:  # label codes in order of first appearance, as extend() gives them
            if p.label not in codes:
                codes[p.label] = len(self.labels)
                self.labels.append(p.label)
        self.codes_all[:k] = np.fromiter((codes[p.label] for p in packets), np.int32, k)
        self._ids = {i: row for row, i in enumerate(ids)}
        self._n = k
