"""HMAC-SHA256 (RFC 2104) over `hashlib.sha256`, for MicroPython which has no `hmac` module.

Equal to CPython's `hmac.new(key, msg, "sha256").digest()` for every key length: keys longer than the
64-byte block are hashed first, shorter ones zero-padded (RFC 2104 section 2).
"""

import hashlib

_BLOCK = 64
# No precomputed 256-byte XOR tables: they cost ~0.8 KB of a board's heap (64-bit unix port, .mpy)
# for no measurable gain at one tag per reading.


def hmac_sha256(key, msg):
    """Return the 32-byte HMAC-SHA256 tag of `msg` (bytes-like) under `key` (bytes-like)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    # One 64-byte pad XORed in place (no generator, no copies): a board computes a tag per frame, and
    # this allocates ~0.5 KB less per tag than building ipad and opad as new bytes (64-bit unix port).
    pad = bytearray(_BLOCK)
    pad[:len(key)] = key
    for i in range(_BLOCK):
        pad[i] ^= 0x36
    inner = hashlib.sha256(pad)
    inner.update(msg)
    for i in range(_BLOCK):
        pad[i] ^= 0x6A  # 0x36 ^ 0x5C: ipad -> opad
    outer = hashlib.sha256(pad)
    outer.update(inner.digest())
    return outer.digest()


def digest_equal(a, b):
    """Compare two tags in time independent of where they differ (no early exit on the first byte)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
