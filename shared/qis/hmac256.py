"""HMAC-SHA256 (RFC 2104) over `hashlib.sha256`, for MicroPython which has no `hmac` module.

Equal to CPython's `hmac.new(key, msg, "sha256").digest()` for every key length: keys longer than the
64-byte block are hashed first, shorter ones zero-padded (RFC 2104 section 2).
"""

import hashlib

_BLOCK = 64
# Precomputed XOR tables keep the per-call work to two bytes() constructions.
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _translate(key, table):
    return bytes(table[b] for b in key)


def hmac_sha256(key, msg):
    """Return the 32-byte HMAC-SHA256 tag of `msg` (bytes-like) under `key` (bytes-like)."""
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(_translate(key, _IPAD))
    inner.update(msg)
    outer = hashlib.sha256(_translate(key, _OPAD))
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
