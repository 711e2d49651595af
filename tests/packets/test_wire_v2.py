"""Wire format v2: a 16-byte per-outcome nonce after the weight (issue 18 point 7); v1 is still read."""

from __future__ import annotations

import dataclasses

import pytest
from qis_gateway.packets import NONCE_BYTES, PacketError, encode, outcome_nonce, verify

from packets.helpers import ADDRESS, KEY_A, KEY_B, packet, signed

NONCE = bytes(range(16))


def test_v2_round_trips_its_nonce_and_is_16_bytes_longer_than_v1() -> None:
    v1 = signed()
    v2 = encode(dataclasses.replace(packet(), nonce=NONCE), KEY_A)
    assert v1[0] == 1 and v2[0] == 2 and len(v2) == len(v1) + NONCE_BYTES
    assert v2[50:66] == NONCE
    got = verify(v2, None, ADDRESS)
    assert got.nonce == NONCE and got.version == 2 and got.label == "bearing_wear" and got.value == 3.25
    old = verify(v1, None, ADDRESS)
    assert old.nonce == b"" and old.version == 1
    assert got.packet_id != old.packet_id


def test_equal_fields_with_distinct_nonces_are_distinct_packets() -> None:
    ids = {verify(encode(dataclasses.replace(packet(), nonce=bytes([i]) * 16), KEY_A)).packet_id for i in range(20)}
    assert len(ids) == 20


def test_every_bit_of_a_v2_packet_is_checked() -> None:
    data = encode(dataclasses.replace(packet(), nonce=NONCE), KEY_A)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(PacketError):
                verify(bytes(bad))


def test_a_nonce_of_the_wrong_length_is_refused() -> None:
    for nonce in (b"\x01", b"\x00" * 17):
        with pytest.raises(PacketError) as err:
            encode(dataclasses.replace(packet(), nonce=nonce), KEY_A)
        assert err.value.reason == "field"


def test_outcome_nonce_is_keyed_and_per_frame() -> None:
    digest = b"\x07" * 32
    n = outcome_nonce(KEY_A, "pump-01", 5, digest)
    assert len(n) == NONCE_BYTES and n == outcome_nonce(KEY_A, "pump-01", 5, digest)
    others = {outcome_nonce(KEY_B, "pump-01", 5, digest), outcome_nonce(KEY_A, "pump-02", 5, digest),
              outcome_nonce(KEY_A, "pump-01", 6, digest), outcome_nonce(KEY_A, "pump-01", 5, b"\x08" * 32)}
    assert n not in others and len(others) == 4
