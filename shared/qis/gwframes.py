"""Frames only the gateway builds or checks (summary and error encoders, the fp check, split_frame), kept apart
from qis.messages so a board does not hold their code: qis.messages imports this module lazily, so
the public API (messages.encode_summary, encode_error, decode of fp frames) stays in qis.messages.
"""

import json

from qis.errors import FrameError, why
from qis.hmac256 import hmac_sha256
from qis.messages import MAX_FIELDS, MAX_FRAME_BYTES, MAX_VECTOR, TAG_BYTES, _base, _check_summary, _is_int, _views


def _fail(message):
    raise FrameError("field", message)


def split_frame(payload):
    """(body bytes, tag) of a payload, FrameError when it cannot be a frame at all."""
    data, tag = _views(payload)
    return bytes(data), bytes(tag)


def _frame(body, secret, mac):
    """qis.messages.encode_frame with the tag made by `mac(secret, data)`: the gateway passes a C
    HMAC-SHA256 (the same bytes, ~3x faster). encode_frame itself keeps its signature: a board runs it,
    and its minimum heap (tests/device/test_device_loop.py) has no room for even one more argument."""
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) + TAG_BYTES > MAX_FRAME_BYTES:
        raise FrameError("size", why("framesize", len(data) + TAG_BYTES, MAX_FRAME_BYTES))
    return data + mac(secret, data)


def encode_summary(device, reading_seq, secret, summary, mac=hmac_sha256):
    """The summary frame answering reading `reading_seq`. `summary` is one value with the attributes
    enough, n, top ((label, share permille) pairs), conf (permille), mean, level, hops and ms (the
    gateway passes its BoardSummary). `mac` makes the tag (_frame)."""
    body = _base("summary", device, reading_seq)
    body["re"] = reading_seq
    body["enough"] = summary.enough
    body["n"] = summary.n
    body["top"] = [[item[0], item[1]] for item in summary.top]
    body["conf"] = summary.conf
    body["mean"] = summary.mean
    body["level"] = summary.level
    body["hops"] = summary.hops
    body["ms"] = summary.ms
    _check_summary(body)
    return _frame(body, secret, mac)


def encode_error(device, seq, code, message, secret, mac=hmac_sha256):
    body = _base("error", device, seq)
    body["code"] = code
    body["msg"] = message[:200]
    return _frame(body, secret, mac)


def check_fp(body):
    if not isinstance(body.get("schema"), str):
        _fail("fp.schema must be a string")
    fields = body.get("fields")
    if not isinstance(fields, dict) or not 0 < len(fields) <= MAX_FIELDS:
        _fail("fp.fields must be an object of 1-%d fields" % MAX_FIELDS)
    for name in fields:
        value = fields[name]
        if not isinstance(value, (str, int)):
            _fail("fp.fields[%r] must be a string, integer or boolean" % name)
    if fields.get("schema") != body["schema"]:
        _fail("fp.fields.schema must equal fp.schema")
    vec = body.get("vec")
    if not isinstance(vec, list) or len(vec) > MAX_VECTOR:
        _fail("fp.vec must be a list of at most %d integers" % MAX_VECTOR)
    for q in vec:
        if not _is_int(q) or not -127 <= q <= 127:
            _fail("fp.vec components must be integers in -127..127")


def check_board_frame(kind, body):
    """Field checks of the board -> gateway kinds decoded only by a gateway (fp; status is free-form)."""
    if kind == "fp":
        check_fp(body)
