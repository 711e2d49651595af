"""Property tests: encode/verify round-trips any valid packet; arbitrary or mutated bytes only ever give a
verified packet or PacketError (never another exception), and a mutated packet is never accepted."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_gateway.packets import MAX_DIMENSIONS, OutcomePacket, PacketError, encode, verify

from packets.helpers import KEY_A, signed

text = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), min_size=1, max_size=16).filter(
    lambda s: "\x7f" not in s
)
packets = st.builds(
    OutcomePacket,
    address=st.binary(min_size=32, max_size=32),
    schema_id=text,
    created_s=st.integers(0, 2**63 - 1),
    vector=st.lists(st.integers(-127, 127), max_size=MAX_DIMENSIONS).map(tuple),
    label=text,
    value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    weight=st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
)
VALID = signed()


@settings(max_examples=150, deadline=None)
@given(packets)
def test_round_trip(packet: OutcomePacket) -> None:
    got = verify(encode(packet, KEY_A))
    assert got.vector == packet.vector and got.label == packet.label and got.created_s == packet.created_s
    assert got.weight == packet.weight and got.address == packet.address
    assert got.value == packet.value or (got.value is None and packet.value is None)
    if got.value is not None:
        assert math.copysign(1, got.value) == math.copysign(1, packet.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        verify(data)
    except PacketError:
        return
    raise AssertionError("random bytes verified")  # pragma: no cover


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(0, len(VALID)), st.binary(max_size=40))
def test_spliced_packets_are_rejected(start: int, length: int, insert: bytes) -> None:
    data = VALID[:start] + insert + VALID[start + length :]
    if data == VALID:
        assert verify(data)
        return
    try:
        verify(data)
    except PacketError:
        return
    raise AssertionError("a mutated packet verified")  # pragma: no cover
