"""Proofs of identity, address validation and STORE tokens of a SwarmNode (the RPC layer asks; this module
owns the state).

How it works (``Validation`` owns every piece of state named here):
- A node proves its id by signing our nonce with the key whose SHA-256 is that id (``reply_proof_ok``,
  ``accept_proof``); a proven (address, id) binding is kept in a bounded proof cache (``remember``),
  and the routing table's contacts count as proven too (``proven``).
- Challenges: one outstanding per address (``new_challenge``), ``CHALLENGE_LIFETIME_S``; a PROOF that
  answers it proves the requester. ``hold_until_validated`` keeps a FIND_NODE / FIND_VALUE from an
  unvalidated source with its challenge, so the answer goes out only after the PROOF (QUIC's
  anti-amplification rule, RFC 9000 §8.1: until then the source gets a PONG, < 3x its request).
- ``ValidatedAddresses`` remembers the IPs that proved they receive at their address; ``Tokens`` issues
  and checks STORE tokens (BEP 5); both rotate with ``rotate``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from . import policy, wire
from .config import SwarmConfig
from .identity import NodeIdentity
from .requester import Address
from .routing import RoutingTable

CHALLENGE_LIFETIME_S = 30.0


class Validation:
    __slots__ = ("identity", "config", "rng", "table", "counters", "on_proven", "_challenges", "_proof_cache",
                 "_tokens", "_validated")

    def __init__(self, identity: NodeIdentity, config: SwarmConfig, rng: random.Random, table: RoutingTable,
                 counters: dict[str, int], on_proven: Callable[[Address], None] | None = None) -> None:
        self.identity = identity
        self.config = config
        self.rng = rng
        self.table = table
        self.counters = counters
        self.on_proven = on_proven  # the rate limiter gives a proven source its own bucket
        # addr -> (nonce, requester id, expiry, the request held until the PROOF validates addr, or None)
        self._challenges: dict[Address, tuple[bytes, bytes, float, Any]] = {}
        self._proof_cache: dict[Address, bytes] = {}
        self._tokens = policy.Tokens(rng, config.token_lifetime_s)
        self._validated = policy.ValidatedAddresses(rng, config.address_validation_bits)

    # ---- proofs ----------------------------------------------------------------------------------
    def proven(self, node_id: bytes, addr: Address) -> bool:
        c = self.table.find(int.from_bytes(node_id, "big"))
        if c is not None and c.addr == addr:
            return True
        return self._proof_cache.get(addr) == node_id

    def cached_id(self, addr: Address) -> bytes | None:
        """The id proven lately at ``addr`` (the proof cache), if any."""
        return self._proof_cache.get(addr)

    def proof(self, nonce: bytes | None) -> tuple[bytes, bytes] | None:
        if nonce is None:
            return None
        ident = self.identity
        return (ident.public_key, ident.sign(wire.proof_message(nonce)))

    def remember(self, addr: Address, node_id: bytes) -> None:
        cache = self._proof_cache
        cache[addr] = node_id
        self._validated.mark(addr)
        if self.on_proven is not None:
            self.on_proven(addr)
        if len(cache) > self.config.proof_cache_size:
            del cache[next(iter(cache))]

    def reply_proof_ok(self, nonce: bytes, msg: Any) -> bool:
        """The reply carries a proof of its sender id over our nonce."""
        proof = msg.proof
        return (proof is not None and hashlib.sha256(proof[0]).digest() == msg.sender_id
                and self.identity.verify(proof[0], wire.proof_message(nonce), proof[1]))

    def key_proves(self, pk: bytes, node_id: bytes, message: bytes, sig: bytes) -> bool:
        """``pk`` is ``node_id``'s key and signed ``message`` (a signed LEAVE)."""
        return hashlib.sha256(pk).digest() == node_id and self.identity.verify(pk, message, sig)

    # ---- challenges ------------------------------------------------------------------------------
    def new_challenge(self, addr: Address, node_id: bytes, now_s: float) -> bytes | None:
        old = self._challenges.get(addr)
        if old is not None and old[1] == node_id and now_s <= old[2]:
            return None  # one outstanding challenge per address
        nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        self._challenges[addr] = (nonce, node_id, now_s + CHALLENGE_LIFETIME_S, None)
        if len(self._challenges) > self.config.challenge_cache_size:
            del self._challenges[next(iter(self._challenges))]
        return nonce

    def hold_until_validated(self, msg: Any, addr: Address, now_s: float) -> bytes:
        """Keep ``msg`` with the challenge outstanding for its (addr, id), or a new one; the PROOF of that
        challenge validates addr and gets ``msg`` answered (``accept_proof``). Returns the challenge."""
        old = self._challenges.get(addr)
        if old is None or old[1] != msg.sender_id or now_s > old[2]:
            self.new_challenge(addr, msg.sender_id, now_s)
            old = self._challenges[addr]
        self._challenges[addr] = (old[0], old[1], old[2], msg)
        return old[0]

    def accept_proof(self, msg: Any, addr: Address, now_s: float) -> tuple[bool, Any]:
        """A PROOF from ``addr``: (valid, the request held until it came, or None). A valid one is
        remembered; an invalid one is counted."""
        rec = self._challenges.pop(addr, None)
        pk, sig = msg.proof
        if (rec is None or rec[1] != msg.sender_id or now_s > rec[2]
                or not self.key_proves(pk, msg.sender_id, wire.proof_message(rec[0]), sig)):
            self.counters["drop_bad_proof"] += 1
            return False, None
        self.remember(addr, msg.sender_id)
        return True, rec[3]

    # ---- address validation and tokens -----------------------------------------------------------
    def validated(self, addr: Address) -> bool:
        return self._validated.check(addr)

    def issue_token(self, addr: Address) -> bytes:
        return self._tokens.issue(addr)

    def token_ok(self, token: bytes, addr: Address) -> bool:
        return self._tokens.check(token, addr)

    def rotate(self, now_s: float) -> None:
        if self._tokens.rotate_if_due(now_s, self.rng):
            self._validated.rotate()
