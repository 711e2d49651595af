"""A swarm node's identity: an Ed25519 key whose SHA-256 is the node id.

How it works:
- ``node_id = SHA-256(public_key)`` (32 bytes, the 256-bit Kademlia id), so an id cannot be claimed
  without the matching private key (S/Kademlia's key-derived ids, without the crypto puzzle).
- A node proves its id by signing a fresh challenge (the requester's nonce) with ``sign``; peers check
  it with ``verify`` (see ``wire.proof_message`` for the signed bytes). ``verify`` is looked up on the
  verifying node's own identity, so the simulator can swap in a cheap scheme (``sim.SimIdentity``) for
  all of its nodes while real nodes always use Ed25519.
- pynacl is the only crypto library touched here (pure computation, no I/O besides ``load_or_create``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import nacl.exceptions
import nacl.signing

log = logging.getLogger(__name__)

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
    def generate(cls, seed: bytes | None = None) -> NodeIdentity:
        """A new identity; ``seed`` (32 bytes) makes it deterministic (tests)."""
        if seed is None:
            return cls(nacl.signing.SigningKey.generate())
        if len(seed) != SEED_BYTES:
            raise IdentityError("identity seed must be %d bytes, got %d" % (SEED_BYTES, len(seed)))
        return cls(nacl.signing.SigningKey(seed))

    @classmethod
    def load_or_create(cls, path: Path) -> NodeIdentity:
        """Read the 32-byte key seed at ``path``, or create it (mode 0600) if it does not exist."""
        path = Path(path)
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != SEED_BYTES:
                raise IdentityError(
                    "key file %s holds %d bytes, expected %d; delete it to create a new identity"
                    % (path, len(seed), SEED_BYTES)
                )
            return cls(nacl.signing.SigningKey(seed))
        path.parent.mkdir(parents=True, exist_ok=True)
        key = nacl.signing.SigningKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(key))
        finally:
            os.close(fd)
        log.info("created swarm identity %s at %s", node_id_for(bytes(key.verify_key)).hex()[:16], path)
        return cls(key)

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
