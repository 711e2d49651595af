"""The signed `busy` error frame for a shed fp, built cheaply: shedding must cost far less than answering.

Under overload most frames are shed, so building their answer is most of the shed work.
`qis.messages.encode_error` is written for both runtimes: a new JSON encoder per call (`json.dumps` with
separators) and the board's pure-Python HMAC loop, ~32 us a frame. Here one compact encoder is kept and
the tag comes from `frametag.tag` (CPython's C `hmac.digest`): the same bytes (tests/gateway/test_gw_busy.py), ~8 us.
"""

from __future__ import annotations

import json

from qis import messages

from qis_gateway.frametag import tag

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # what encode_frame's json.dumps builds every call
_MSG_MAX = 200  # encode_error's limit on the text


def busy_frame(device: str, seq: int, why: str, secret: bytes) -> bytes:
    """messages.encode_error(device, seq, "busy", why, secret), byte for byte. `device` and `seq` come
    from an admitted frame, so they passed the decoder's checks already."""
    data = _ENCODER.encode({"v": messages.VERSION, "kind": "error", "dev": device, "seq": seq, "code": "busy",
                            "msg": why[:_MSG_MAX]}).encode()
    if len(data) + messages.TAG_BYTES > messages.MAX_FRAME_BYTES:  # cannot happen for a checked id
        return messages.encode_error(device, seq, "busy", why, secret)  # raises FrameError as before
    return data + tag(secret, data)
