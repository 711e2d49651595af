"""The gateway's HMAC-SHA256 frame tag, in C: for the frames it sends (`messages.encode_summary(...,
mac=tag)`, `encode_error(..., mac=tag)`, busy.py), and for the frames it receives (`decode`, below).

qis.hmac256 is the board's portable HMAC (MicroPython has no `hmac` module): its XOR loops run in Python,
~8-18 us a tag on CPython; the stdlib's C `hmac.digest` gives the same bytes in ~2-6 us.
"""

from __future__ import annotations

import hmac
import types
from typing import Any

from qis import messages


def tag(secret: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of `data` under `secret`: equal to qis.hmac256.hmac_sha256."""
    return hmac.digest(secret, data, "sha256")


def _with_c_tag(decode: types.FunctionType) -> types.FunctionType:
    """`decode`'s very code, its globals a copy of qis.messages' with the tag check in C.

    Why: qis.messages.decode is board code and checks the tag with qis.hmac256 (hmac_sha256 + the
    Python-loop digest_equal, ~10 us of every admitted frame). A tag argument to decode did not fit a
    board's minimum heap (tests/device), and a second decoder would be a second copy of the frame rules.
    So the gateway runs the same function object's code, every check unchanged, where only the names
    `hmac_sha256` and `digest_equal` resolve to C: same bytes, same constant-time comparison. The copy
    is taken at import, so a name rebound in qis.messages afterwards (a test's monkeypatch) is not seen
    here; tests/gateway/test_gw_frametag.py checks that both decoders agree."""
    env: dict[str, Any] = dict(decode.__globals__)
    env["hmac_sha256"] = tag
    env["digest_equal"] = hmac.compare_digest
    fast = types.FunctionType(decode.__code__, env, decode.__name__, decode.__defaults__, decode.__closure__)
    fast.__kwdefaults__ = decode.__kwdefaults__
    fast.__doc__ = decode.__doc__
    return fast


decode = _with_c_tag(messages.decode)  # type: ignore[arg-type]
