"""The verified-packet cache and the swarm's value validator: a packet's signature is checked once,
however often it is read (every lookup of an address returns the same packets), and the swarm refuses
what does not verify for the address it is stored under."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection

from qis_gateway.packets import (
    MAX_PACKET_BYTES,
    OutcomePacket,
    PacketError,
    _verify,
    _was_signed_here,
    _with_id,
    check_claims,
    decode_unverified,
)

log = logging.getLogger(__name__)

# Distinct addresses, schema ids, labels and origin keys the cache shares between its packets.
SHARED_VALUES = 4096


class VerifiedPacketCache:
    """LRU of verified packets by packet id: a packet is verified once however often it is read.

    The signature result is what is cached; the address and trust-list checks depend on the call and run
    every time (they are two comparisons). Rejections are not cached: a rejected packet costs one verify
    each time it is offered, and `rejected` counts them by reason. Safe to share between threads.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, OutcomePacket] = OrderedDict()
        self._shared: dict[bytes | str, bytes | str] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.rejected: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, packet_id: bytes) -> bool:
        return packet_id in self._entries

    def verify(
        self, data: bytes, trusted_keys: Collection[bytes] | None = None, address: bytes | None = None
    ) -> OutcomePacket:
        try:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise PacketError("type", "a packet must be bytes, not %s" % type(data).__name__)
            data = bytes(data)
            if len(data) > MAX_PACKET_BYTES:  # do not hash oversized junk
                raise PacketError("long", "packet is %d bytes, the limit is %d" % (len(data), MAX_PACKET_BYTES))
            packet_id = hashlib.sha256(data).digest()
            with self._lock:
                packet = self._entries.get(packet_id)
                if packet is not None:
                    self._entries.move_to_end(packet_id)
                    self.hits += 1
            if packet is not None:
                check_claims(packet, trusted_keys, address)
                return packet
            if _was_signed_here(packet_id):
                packet = decode_unverified(data)
                check_claims(packet, trusted_keys, address)
                packet = _with_id(packet, packet_id)
            else:
                packet = _verify(data, trusted_keys, address, packet_id)
            with self._lock:
                self.misses += 1
                packet = self._compact(packet)
                self._entries[packet_id] = packet
                if len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return packet
        except PacketError as exc:
            with self._lock:
                self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            raise

    def _compact(self, packet: OutcomePacket) -> OutcomePacket:
        """The packet with its repeated fields (address, schema id, label, origin key) shared with the
        cached packets that carry equal ones: an address holds many packets from few gateways with few
        labels, so this saves ~220 of ~660 bytes per entry. The table of shared values is bounded by
        SHARED_VALUES (cleared when full: later packets share again; equal values are interchangeable)."""
        shared = self._shared
        if len(shared) + 4 > SHARED_VALUES:  # room for this packet's four values
            shared.clear()
        address = shared.setdefault(packet.address, packet.address)
        schema_id = shared.setdefault(packet.schema_id, packet.schema_id)
        label = shared.setdefault(packet.label, packet.label)
        origin_key = shared.setdefault(packet.origin_key, packet.origin_key)
        return OutcomePacket(address, schema_id, packet.created_s, packet.vector, label,  # type: ignore[arg-type]
                             packet.value, packet.weight, origin_key, packet.verified_id,  # type: ignore[arg-type]
                             packet.nonce)


def make_validator(
    cache: VerifiedPacketCache, trusted_keys: Collection[bytes] | None = None
) -> Callable[[bytes, bytes], bool]:
    """The swarm's `validator(address, value) -> bool`: True only for a verified packet for that address."""

    def validate(address: bytes, value: bytes) -> bool:
        try:
            cache.verify(value, trusted_keys, address)
        except PacketError as exc:
            log.debug("swarm value rejected: %s", exc)
            return False
        return True

    return validate
