"""A swarm node's key file: ``load_or_create(path)`` reads the 32-byte Ed25519 seed (the node's identity,
``core.identity.NodeIdentity``) or creates it, mode 0600, from the operating system's randomness.

Outside the core because it touches the file system and ``os.urandom``; the core only ever receives
a ready ``NodeIdentity``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .core.identity import SEED_BYTES, IdentityError, NodeIdentity

log = logging.getLogger(__name__)


def load_or_create(path: Path) -> NodeIdentity:
    """Read the 32-byte key seed at ``path``, or create it (mode 0600) if it does not exist."""
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("swarm key file %s has loose permissions %04o: anyone who reads it can act as this node; "
                        "run: chmod 600 %s", path, stat.S_IMODE(mode), path)
        seed = path.read_bytes()
        if len(seed) != SEED_BYTES:
            raise IdentityError(
                "key file %s holds %d bytes, expected %d; delete it to create a new identity"
                % (path, len(seed), SEED_BYTES)
            )
        return NodeIdentity.generate(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(SEED_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, seed)
    finally:
        os.close(fd)
    identity = NodeIdentity.generate(seed)
    log.info("created swarm identity %s at %s", identity.node_id.hex()[:16], path)
    return identity
