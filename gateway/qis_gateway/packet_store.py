"""Gateway-side packet policy: what to sign and store, and which fetched packets may be synthesised.

How it works
------------
- `sign_for_levels` builds one signed packet per schema level (exact address, then each coarser one):
  every outcome a gateway stores goes to all of them, so a sparse exact bucket can fall back to a
  coarser bucket that already holds the same evidence. The packets differ only in their address, which
  is signed, so none can be replayed under another level's address.
- `select_packets` turns the raw values a swarm lookup returned into verified packets for one address:
  each value goes through the verified-packet cache (with the trust list and the address check), every
  rejection is counted by reason and never reaches synthesis, duplicates collapse, and the per-signer
  share cap is applied.
- `cap_per_signer(packets, max_share)` keeps each signer's newest packets so that no signer holds more
  than `max_share` of the packets selected (one gateway cannot flood a bucket). It picks the largest
  per-signer count m with m <= max(min_per_signer, max_share * R(m)), where R(m) = sum_s min(count_s, m)
  is the size of the result; since R grows more slowly as m rises, the allowed m form one interval and a
  scan from 1 finds its end. `min_per_signer` (default 1) lets a lone signer still be heard once;
  max_share >= 1 disables the cap.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qis.schema import Schema

from qis_gateway.packets import OutcomePacket, PacketError, VerifiedPacketCache, encode

if TYPE_CHECKING:
    import nacl.signing

log = logging.getLogger(__name__)


def cap_per_signer(
    packets: Sequence[OutcomePacket], max_share: float, *, min_per_signer: int = 1
) -> list[OutcomePacket]:
    """Packets of one address with no signer above `max_share` of the result; input order is kept."""
    if not max_share > 0:
        raise ValueError("max_share must be positive, got %r" % (max_share,))
    if max_share >= 1 or not packets:
        return list(packets)
    by_signer: dict[bytes, list[int]] = {}
    for i, packet in enumerate(packets):
        by_signer.setdefault(packet.origin_key, []).append(i)
    counts = sorted((len(v) for v in by_signer.values()), reverse=True)
    best, size = 0, 0
    for m in range(1, counts[0] + 1):
        size += sum(1 for c in counts if c >= m)  # R(m) = R(m-1) + #signers with count >= m
        if m <= max(min_per_signer, max_share * size):
            best = m
        elif m > min_per_signer:
            break
    keep: set[int] = set()
    for indexes in by_signer.values():
        newest = sorted(indexes, key=lambda i: (-packets[i].created_s, i))[:best]
        keep.update(newest)
    return [p for i, p in enumerate(packets) if i in keep]


@dataclass
class Selection:
    packets: list[OutcomePacket]
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    capped: int = 0


def select_packets(
    values: Iterable[bytes],
    address: bytes,
    cache: VerifiedPacketCache,
    *,
    trusted_keys: Collection[bytes] | None = None,
    max_share: float = 1.0,
    min_per_signer: int = 1,
) -> Selection:
    """Raw swarm values fetched for `address` -> verified, de-duplicated, capped packets (+ rejection counts)."""
    selection = Selection([])
    seen: set[bytes] = set()
    for value in values:
        try:
            packet = cache.verify(value, trusted_keys, address)
        except PacketError as exc:
            selection.rejected[exc.reason] = selection.rejected.get(exc.reason, 0) + 1
            log.debug("dropped a packet fetched for %s: %s", address.hex()[:16], exc)
            continue
        if packet.packet_id in seen:
            selection.duplicates += 1
            continue
        seen.add(packet.packet_id)
        selection.packets.append(packet)
    capped = cap_per_signer(selection.packets, max_share, min_per_signer=min_per_signer)
    selection.capped = len(selection.packets) - len(capped)
    selection.packets = capped
    return selection


def sign_for_levels(
    level_addresses: Sequence[bytes],
    schema_id: str,
    created_s: int,
    vector: Sequence[int],
    label: str,
    signing_key: nacl.signing.SigningKey,
    *,
    value: float | None = None,
    weight: float = 1.0,
) -> list[tuple[bytes, bytes]]:
    """(address, packet bytes) for the exact address and every coarser one (Schema.level_addresses order)."""
    out = []
    for address in level_addresses:
        packet = OutcomePacket(address, schema_id, created_s, tuple(vector), label, value, weight)
        out.append((address, encode(packet, signing_key)))
    return out


def sign_for_schema(
    schema: Schema,
    fields: dict,
    vector: Sequence[int],
    label: str,
    signing_key: nacl.signing.SigningKey,
    created_s: int,
    *,
    value: float | None = None,
    weight: float = 1.0,
    swarm_key: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """`sign_for_levels` over `schema.level_addresses(fields)`: what a gateway stores for one outcome."""
    addresses = schema.level_addresses(fields, swarm_key)
    return sign_for_levels(addresses, schema.schema_id, created_s, vector, label, signing_key, value=value,
                           weight=weight)  # fmt: skip


def merge_rejections(total: dict[str, int], more: Mapping[str, int]) -> None:
    for reason, count in more.items():
        total[reason] = total.get(reason, 0) + count
