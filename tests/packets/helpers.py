"""Shared builders for the packets tests: fixed keys (seeded), addresses and a valid packet."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nacl.signing
from qis_gateway.columns import PacketColumns
from qis_gateway.packets import OutcomePacket, encode, verify
from qis_gateway.synthesis import Summary, synthesise_columns

KEY_A = nacl.signing.SigningKey(hashlib.sha256(b"gateway A").digest())
KEY_B = nacl.signing.SigningKey(hashlib.sha256(b"gateway B").digest())
KEY_EVIL = nacl.signing.SigningKey(hashlib.sha256(b"untrusted gateway").digest())
ADDRESS = hashlib.sha256(b"exact bucket").digest()
OTHER_ADDRESS = hashlib.sha256(b"another bucket").digest()
NOW_S = 1_800_000_000


def pub(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def packet(
    label: str = "bearing_wear",
    vector: tuple[int, ...] = (12, -40, 127),
    *,
    value: float | None = 3.25,
    weight: float = 0.75,
    created_s: int = NOW_S - 60,
    address: bytes = ADDRESS,
    schema_id: str = "machine-health/1",
) -> OutcomePacket:
    return OutcomePacket(address, schema_id, created_s, tuple(vector), label, value, weight)


def signed(key: nacl.signing.SigningKey = KEY_A, **fields) -> bytes:
    return encode(packet(**fields), key)


def verified(key: nacl.signing.SigningKey = KEY_A, **fields) -> OutcomePacket:
    return verify(signed(key, **fields))

ROOT = Path(__file__).resolve().parents[2]


def synthesise(query_vector: Sequence[int], packets: Sequence[OutcomePacket] | PacketColumns, now_s: float,
               **params: Any) -> Summary:
    """`synthesise_columns` (the function the gateway's path calls) over a list of verified packets."""
    columns = packets if isinstance(packets, PacketColumns) else PacketColumns.from_packets(packets)
    return synthesise_columns(query_vector, columns, now_s, **params)
