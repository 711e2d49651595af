"""A swarm node's identity: an Ed25519 key whose SHA-256 is the node id.

How it works:
- ``node_id = SHA-256(public_key)`` (32 bytes, the 256-bit Kademlia id), so an id cannot be claimed
  without the matching private key (S/Kademlia's key-derived ids, without the crypto puzzle).
- A node proves its id by signing a fresh challenge (the requester's nonce) with ``sign``; peers check
  it with ``verify`` (see ``wire.proof_message`` for the signed bytes). ``verify`` is looked up on the
  verifying node's own identity, so the simulator can swap in a cheap scheme (``sim.SimIdentity``) for
  all of its nodes while real nodes always use Ed25519.
- pynacl is the only crypto library touched here (pure computation). The key file (created with mode
  0600 from the operating system's randomness) is ``swarm/keyfile.py``'s business, outside the core.
"""

from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32


def node_id_for(public_key: bytes) -> bytes:
    """The 256-bit node id a public key owns."""
    return hashlib.sha256(public_key).digest()


class IdentityError(ValueError):
    """A key file or seed is unusable (wrong length, unreadable)."""


class NodeIdentity:
    """Ed25519 signing key plus the node id derived from it."""

    __slots__ = ("_signing_key", "public_key", "node_id")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        self.node_id: bytes = node_id_for(self.public_key)

    @classmethod
    def generate(cls, seed: bytes) -> NodeIdentity:
        """The identity of the 32-byte key ``seed`` (a key file's content, or a test's fixed bytes)."""
        if len(seed) != SEED_BYTES:
            raise IdentityError("identity seed must be %d bytes, got %d" % (SEED_BYTES, len(seed)))
        return cls(nacl.signing.SigningKey(seed))

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature over ``message``."""
        return self._signing_key.sign(message).signature

    @staticmethod
    def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is ``public_key``'s signature over ``message``; never raises."""
        if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
            return False
        return True

    def __repr__(self) -> str:
        return "NodeIdentity(%s…)" % self.node_id.hex()[:16]
