"""Wire format, v1 packets (v2 in test_wire_v2.py): layout, limits, field validation, ids."""

from __future__ import annotations

import hashlib
import math
import struct

import pytest
from qis_gateway.packets import (
    MAX_PACKET_BYTES,
    MIN_PACKET_BYTES,
    SIGN_CONTEXT,
    OutcomePacket,
    PacketError,
    decode_unverified,
    encode,
    signer_id,
    verify,
)

from packets.helpers import ADDRESS, KEY_A, KEY_B, NOW_S, packet, pub, signed, verified


def test_round_trip_keeps_every_field() -> None:
    original = packet(label="seal_leak", vector=(0, -127, 5, 64), value=-0.5, weight=0.125, created_s=NOW_S)
    got = verify(encode(original, KEY_A))
    assert (got.address, got.schema_id, got.created_s) == (ADDRESS, "machine-health/1", NOW_S)
    assert (got.vector, got.label, got.value, got.weight) == ((0, -127, 5, 64), "seal_leak", -0.5, 0.125)
    assert got.origin_key == pub(KEY_A)
    assert got == original.__class__(**{**_fields(original), "origin_key": pub(KEY_A)})


def _fields(p: OutcomePacket) -> dict:
    return {name: getattr(p, name) for name in ("address", "schema_id", "created_s", "vector", "label", "value",
                                                 "weight")}  # fmt: skip


def test_value_absent_round_trips_as_none_and_is_8_bytes_shorter() -> None:
    with_value, without = signed(value=1.0), signed(value=None)
    assert len(with_value) - len(without) == 8
    assert verify(without).value is None


def test_layout_matches_the_documented_table() -> None:
    data = signed(label="ok", vector=(1, -2), value=2.5, weight=0.5, created_s=1234)
    assert data[0] == 1 and data[1] == 0x01
    assert data[2:34] == ADDRESS
    assert struct.unpack(">Q", data[34:42])[0] == 1234
    assert struct.unpack(">d", data[42:50])[0] == 0.5
    assert struct.unpack(">d", data[50:58])[0] == 2.5
    schema = b"machine-health/1"
    assert data[58] == len(schema) and data[59 : 59 + len(schema)] == schema
    i = 59 + len(schema)
    assert data[i : i + 3] == b"\x02ok"
    assert data[i + 3 : i + 6] == b"\x02\x01\xfe"
    assert data[i + 6 : i + 38] == pub(KEY_A)
    assert len(data) == i + 38 + 64
    # The signature covers the context prefix and every byte before it.
    KEY_A.verify_key.verify(SIGN_CONTEXT + data[:-64], data[-64:])


def test_encoding_is_deterministic_and_packet_id_is_sha256_of_the_bytes() -> None:
    a, b = signed(), signed()
    assert a == b
    assert verify(a).packet_id == hashlib.sha256(a).digest()
    assert signed(key=KEY_B) != a


def test_signer_id_is_sha256_of_the_public_key() -> None:
    p = verified()
    assert p.signer_id == hashlib.sha256(pub(KEY_A)).digest() == signer_id(pub(KEY_A))


def test_packet_built_by_hand_has_no_id() -> None:
    with pytest.raises(PacketError) as err:
        _ = packet().packet_id
    assert err.value.reason == "unverified"
    assert not packet().verified and verified().verified


def test_size_limit_is_enforced_on_encode() -> None:
    # 64-byte schema and label, 128 dims: 157 + 8 + 63 + 63 + 128 = 419 bytes, fits.
    big = packet(label="L" * 64, schema_id="S" * 64, vector=(1,) * 128)
    assert len(encode(big, KEY_A)) <= MAX_PACKET_BYTES
    with pytest.raises(PacketError) as err:
        encode(packet(vector=(1,) * 129), KEY_A)
    assert err.value.reason == "field"


def test_smallest_packet_is_min_bytes() -> None:
    assert len(signed(label="x", schema_id="s", vector=(), value=None)) == MIN_PACKET_BYTES


@pytest.mark.parametrize(
    "fields",
    [
        {"weight": 0.0},
        {"weight": 1.5},
        {"weight": math.nan},
        {"weight": True},
        {"value": math.inf},
        {"value": math.nan},
        {"value": "3"},
        {"label": ""},
        {"label": "x" * 65},
        {"label": "bad\nlabel"},
        {"label": "\udc80"},
        {"schema_id": ""},
        {"vector": (128,)},
        {"vector": (-128,)},
        {"vector": (1.5,)},
        {"vector": (True,)},
        {"created_s": -1},
        {"created_s": 1.5},
        {"address": b"short"},
    ],
)
def test_bad_fields_are_refused_on_encode(fields: dict) -> None:
    with pytest.raises(PacketError) as err:
        encode(packet(**fields), KEY_A)
    assert err.value.reason == "field"


def test_non_packets_and_non_bytes_are_refused() -> None:
    with pytest.raises(PacketError) as err:
        encode("not a packet", KEY_A)  # type: ignore[arg-type]
    assert err.value.reason == "type"
    with pytest.raises(PacketError) as err:
        encode(packet(), b"\x00" * 32)  # type: ignore[arg-type]
    assert err.value.reason == "type"
    for junk in (None, "text", 12, [1, 2]):
        with pytest.raises(PacketError) as err:
            verify(junk)  # type: ignore[arg-type]
        assert err.value.reason == "type"


def test_non_ascii_labels_round_trip() -> None:
    assert verify(signed(label="Lagerverschleiß-日本")).label == "Lagerverschleiß-日本"


def test_decode_unverified_parses_but_carries_no_id() -> None:
    p = decode_unverified(signed())
    assert p.label == "bearing_wear" and not p.verified


def test_memoryview_and_bytearray_are_accepted() -> None:
    data = signed()
    assert verify(bytearray(data)).packet_id == verify(memoryview(data)).packet_id == verify(data).packet_id


@pytest.mark.parametrize("code", [*range(0x20), 0x7F])
def test_every_control_character_is_refused_in_text_on_encode_and_on_decode(code: int) -> None:
    bad = "ab%scd" % chr(code)
    with pytest.raises(PacketError):
        encode(packet(label=bad), KEY_A)
    # Decode side: a packet signed with the label "abXcd", then X replaced in the bytes (same length).
    data = signed(label="abXcd")
    forged = data.replace(b"abXcd", bad.encode())
    assert len(forged) == len(data)
    with pytest.raises(PacketError) as err:
        decode_unverified(forged)
    assert err.value.reason == "field"


def test_printable_and_non_ascii_text_around_the_control_range_is_accepted() -> None:
    label = "".join(chr(c) for c in range(0x20, 0x7F))[:32] + "\x80é~"
    assert decode_unverified(signed(label=label)).label == label
