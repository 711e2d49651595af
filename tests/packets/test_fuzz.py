"""Property tests: encode/verify round-trips any valid packet; arbitrary or mutated bytes only ever give a
verified packet or PacketError (never another exception), and a mutated packet is never accepted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qis_gateway.packets import MAX_DIMENSIONS, OutcomePacket, PacketError, encode, verify

from packets.helpers import KEY_A, NOW_S, signed, synthesise, verified
from packets.oracle import summaries_agree, synthesise_loop

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


rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.tuples(st.integers(-127, 127), st.integers(-127, 127)),
        st.integers(-100, 10_000),
        st.sampled_from([0.25, 0.5, 1.0]),
        st.none() | st.floats(-1e6, 1e6),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda r: (r[1], r[2]),
)


@settings(max_examples=60, deadline=None)
@given(rows, st.tuples(st.integers(-127, 127), st.integers(-127, 127)), st.sampled_from([1, 2, 5]))
def test_synthesis_invariants(rows: list, query: tuple[int, int], min_n: int) -> None:
    packets = [verified(label=lb, vector=v, created_s=NOW_S - age, weight=c, value=x) for lb, v, age, c, x in rows]
    s = synthesise(query, packets, NOW_S, half_life_s=1000.0, min_n=min_n, top=3)
    assert summaries_agree(s, synthesise_loop(query, packets, NOW_S, half_life_s=1000.0, min_n=min_n, top=3))
    assert 0 <= s.n <= len(packets)
    if s.n:
        assert 1.0 - 1e-9 <= s.n_eff <= s.n + 1e-9
    if not s.enough:
        assert (s.top, s.confidence, s.mean_value) == ((), 0.0, None)
        return
    full = synthesise(query, packets, NOW_S, half_life_s=1000.0, min_n=min_n, top=10)
    assert math.fsum(share for _, share in full.top) == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= s.confidence < 1.0
    if s.mean_value is not None:
        values = [x for *_, x in rows if x is not None]
        assert min(values) - 1e-6 <= s.mean_value <= max(values) + 1e-6
