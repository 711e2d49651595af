"""The HMAC-SHA256 of board frames in C, for `qis.messages.decode(..., mac=tag, equal=equal)` and the
encoders' `mac=tag`.

qis.hmac256 is the board's portable HMAC (MicroPython has no `hmac` module): its XOR loops run in
Python, ~18 us a tag on CPython plus ~4 us for the constant-time compare. The stdlib's C `hmac.digest`
and `hmac.compare_digest` give the same bytes and answers in ~6 and ~0.4 us; the gateway computes two
tags per reading (the fp's check and its summary's).
"""

from __future__ import annotations

import hmac


def tag(secret: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of `data` under `secret`: equal to qis.hmac256.hmac_sha256."""
    return hmac.digest(secret, data, "sha256")


equal = hmac.compare_digest  # constant time, like qis.hmac256.digest_equal
