"""Attack tooling for the adversarial suite, built from the project's own swarm core.

- ``HostilePeer``: a raw UDP socket on a loopback address that speaks the swarm's wire format with a real
  identity (so it passes the id proofs), answers PING/FIND_NODE as an honest node would, and lets a test
  put anything it likes into its NODES answers.
- ``SybilHolder`` (issue 18 point 2): a HostilePeer whose id was ground to sit next to an address
  (``grind_near``) and that answers every FIND_VALUE with ``total=2^30, offset=0`` and a page of values
  that fail the validator; it notes when each FIND_VALUE arrived (loop time).

(Forged-source floods are ``flood.py``: a separate process sending from 127.x.y.z, all of which routes to
the loopback interface on Linux, so no raw-socket privileges are needed.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import msgpack
from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.identity import NodeIdentity

Address = tuple[str, int]

class HostilePeer(asyncio.DatagramProtocol):
    """A peer that proves its id like an honest node; ``nodes_contacts`` are what its NODES answers carry
    (raw [id, ip, port] entries, encoded without our own encoder's checks)."""

    def __init__(self, seed: bytes) -> None:
        self.identity = NodeIdentity.generate(seed)
        self.node_id = self.identity.node_id
        self.nodes_contacts: list[list[object]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[object, Address]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def _proof(self, nonce: bytes | None) -> list[bytes] | None:
        if nonce is None:
            return None
        return [self.identity.public_key, self.identity.sign(wire.proof_message(nonce))]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            msg = wire.decode(data)
        except Exception:
            return
        self.received.append((msg, (addr[0], addr[1])))

        t = type(msg)
        if t is wire.Ping:
            body: list[object] = [wire.PONG, msg.tid, self.node_id, self._proof(msg.nonce), None]
        elif t is wire.FindNode:
            body = [wire.NODES, msg.tid, self.node_id, self._proof(msg.nonce), None, b"t" * 8,
                    self.nodes_contacts]
        elif t is wire.FindValue:
            body = [wire.VALUES, msg.tid, self.node_id, self._proof(msg.nonce), None, b"t" * 8, msg.offset, 0,
                    b"", [], self.nodes_contacts]
        else:
            return
        assert self.transport is not None
        self.transport.sendto(msgpack.packb(body, use_bin_type=True), addr)

async def open_hostile(seed: bytes, host: str = "127.0.0.1") -> HostilePeer:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: HostilePeer(seed), local_addr=(host, 0))
    return proto  # type: ignore[return-value]


def grind_near(address: bytes, bits: int, count: int, salt: bytes = b"") -> list[bytes]:
    """``count`` key seeds whose node ids share the first ``bits`` bits with ``address`` (2^bits key
    generations each on average: ids are SHA-256 of an Ed25519 public key, so they cannot be chosen)."""
    want = int.from_bytes(address, "big") >> (256 - bits)
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        seed = hashlib.sha256(b"grind" + salt + i.to_bytes(8, "big")).digest()
        i += 1
        if int.from_bytes(NodeIdentity.generate(seed).node_id, "big") >> (256 - bits) == want:
            out.append(seed)
    return out


class SybilHolder(HostilePeer):
    """Answers FIND_VALUE as a holder of 2^30 values, always at offset 0, each page full of values whose
    signature is wrong; FIND_NODE with ``nodes_contacts`` (the other Sybils)."""

    def __init__(self, seed: bytes, value_bytes: int = 300) -> None:
        super().__init__(seed)
        self.value_bytes = value_bytes
        self.find_value_at: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            msg = wire.decode(data)
        except Exception:
            return
        if type(msg) is not wire.FindValue:
            super().datagram_received(data, addr)
            return
        self.received.append((msg, (addr[0], addr[1])))
        self.find_value_at.append(asyncio.get_running_loop().time())
        junk = [os.urandom(self.value_bytes) for _ in range(3)]  # 3 x 300 B: most of one datagram
        body = [wire.VALUES, msg.tid, self.node_id, self._proof(msg.nonce), None, b"t" * 8, 0, 1 << 30,
                os.urandom(8), junk, []]
        assert self.transport is not None
        self.transport.sendto(msgpack.packb(body, use_bin_type=True), addr)


async def open_sybil(seed: bytes, host: str = "127.0.0.1") -> SybilHolder:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: SybilHolder(seed), local_addr=(host, 0))
    return proto  # type: ignore[return-value]
