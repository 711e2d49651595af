"""The gateway's HMAC-SHA256 frame tag, in C: for the frames it sends (`messages.encode_summary(...,
mac=tag)`, `encode_error(..., mac=tag)`, busy.py).

qis.hmac256 is the board's portable HMAC (MicroPython has no `hmac` module): its XOR loops run in Python,
~18 us a tag on CPython; the stdlib's C `hmac.digest` gives the same bytes in ~6 us. Checking a board's
frame (`messages.decode`) keeps the portable one: decode is board code, and a board's minimum heap has no
room for a tag argument (gwframes._frame).
"""

from __future__ import annotations

import hmac


def tag(secret: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of `data` under `secret`: equal to qis.hmac256.hmac_sha256."""
    return hmac.digest(secret, data, "sha256")
