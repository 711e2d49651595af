"""Datagram codec: round trips, size bound, and a decoder that only ever raises WireError."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.routing import Contact
from qis_gateway.swarm.errors import WireError

ID = bytes(range(32))
NONCE = b"n" * 16
PROOF = (b"p" * 32, b"s" * 64)


def _contacts(n: int, ip: str = "192.168.100.200") -> tuple[Contact, ...]:
    return tuple(Contact(bytes([i]) * 32, (ip, 40000 + i)) for i in range(n))


SAMPLES = [
    wire.Ping(1, ID, NONCE),
    wire.Ping(2, ID, None),
    wire.FindNode(3, ID, None, b"t" * 32),
    wire.FindValue(4, ID, NONCE, b"a" * 32, 7),
    wire.Store(5, ID, None, b"a" * 32, b"tok12345", (b"v1", b"v2" * 100)),
    wire.Leave(6, ID),
    wire.Proof(7, ID, PROOF),
    wire.Pong(8, ID, PROOF, NONCE),
    wire.Nodes(9, ID, None, None, b"tok", _contacts(20)),
    wire.Values(10, ID, PROOF, NONCE, b"tok", 2, 9, b"d" * 8, (b"x" * 300, b"y" * 300), ()),
    wire.Stored(11, ID, None, None, 2),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: wire.Message) -> None:
    back = wire.decode(wire.encode(msg))
    assert type(back) is type(msg)
    for name in msg.__dataclass_fields__:
        a, b = getattr(msg, name), getattr(back, name)
        if name == "contacts":
            assert [(c.node_id, c.addr) for c in a] == [(c.node_id, c.addr) for c in b]
        else:
            assert a == b, name


def test_largest_replies_fit_one_datagram() -> None:
    """The node's size budget (REPLY_OVERHEAD + contact/value sizes) really bounds the encoding."""
    budget = wire.MAX_DATAGRAM - wire.REPLY_OVERHEAD - len("255.255.255.255")
    contacts: list[Contact] = []
    for c in _contacts(wire.MAX_CONTACTS, ip="255.255.255.255"):
        if sum(wire.contact_size(x) for x in contacts) + wire.contact_size(c) > budget:
            break
        contacts.append(c)
    assert len(contacts) >= 20  # a full k=20 answer fits with IPv4 addresses
    data = wire.encode(wire.Nodes(0xFFFFFFFF, ID, PROOF, NONCE, b"t" * 8, tuple(contacts)))
    assert len(data) <= wire.MAX_DATAGRAM
    values = [bytes([i]) * 512 for i in range(3)]
    page: list[bytes] = []
    for v in values:
        if sum(wire.value_size(x) for x in page) + wire.value_size(v) <= budget:
            page.append(v)
    assert len(page) == 2
    data = wire.encode(wire.Values(0xFFFFFFFF, ID, PROOF, NONCE, b"t" * 8, 1 << 20, 1 << 30, b"d" * 8, tuple(page), ()))
    assert len(data) <= wire.MAX_DATAGRAM


def test_oversized_encode_is_refused() -> None:
    with pytest.raises(WireError):
        wire.encode(wire.Store(1, ID, None, b"a" * 32, b"t", (b"x" * 1400,)))


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xc1", b"\x93\x01\x02", msgpack.packb([1, 1, ID]), msgpack.packb([1, -1, ID, None]),
    msgpack.packb([1, 1, ID[:31], None]), msgpack.packb([2, 1, ID, None, b"short"]),
    msgpack.packb([4, 1, ID, None, b"a" * 32, b"tok", []]), msgpack.packb({"a": 1}),
    msgpack.packb([17, 1, ID, None, None, b"", [[ID, "1.2.3.4", 0]]]),
    msgpack.packb([17, 1, ID, None, None, b"", [[ID, "1.2.3.4", 70000]]]),
    msgpack.packb([18, 1, ID, [b"k" * 32], None, b"", 0, 0, b"", [], []]),
    msgpack.packb([6, 1, ID, None]), msgpack.packb([1, 1, ID, None]) + b"\x00", b"\xff" * 1401,
    msgpack.packb([1, True, ID, None]), msgpack.packb([99, 1, ID, None]),
], ids=range(18))
def test_bad_datagrams_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        wire.decode(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1500))
def test_decoder_fuzz_random_bytes(data: bytes) -> None:
    try:
        wire.decode(data)
    except WireError:
        pass


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.binary(max_size=40),
                  st.text(max_size=20), st.floats(allow_nan=True), st.sampled_from([ID, NONCE, b"t" * 8]))
_tree = st.recursive(_leaf, lambda ch: st.lists(ch, max_size=6) | st.dictionaries(st.text(max_size=4), ch,
                                                                                    max_size=3), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from([1, 2, 3, 4, 5, 6, 16, 17, 18, 19]), tid=st.integers(-5, 2**33),
       rest=st.lists(_tree, max_size=10))
def test_decoder_fuzz_structured(kind: int, tid: int, rest: list) -> None:
    """Well-formed msgpack arrays with the right kinds but arbitrary field types."""
    data = msgpack.packb([kind, tid, ID, *rest], use_bin_type=True)
    try:
        msg = wire.decode(data)
    except WireError:
        return
    assert len(wire.encode(msg)) <= wire.MAX_DATAGRAM  # whatever decodes re-encodes


def test_value_hashes_are_computed_once_per_value() -> None:
    values = [hashlib.sha256(b"hash once %d" % i).digest() * 8 for i in range(50)]
    first = wire.set_digest(values)
    before = wire.value_hash.cache_info().hits
    again = wire.set_digest([bytes(bytearray(v)) for v in values])  # equal values, new objects (as from SQLite)
    assert again == first and wire.value_hash.cache_info().hits - before == 50
    assert wire.value_hash(values[0]) == int.from_bytes(hashlib.sha256(values[0]).digest()[:8], "big")
