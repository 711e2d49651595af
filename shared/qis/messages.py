"""Device <-> gateway frames: an authenticated JSON body, the same on both runtimes.

Wire form of every frame (MQTT payload):

    body (UTF-8 JSON object) || tag (32 bytes, HMAC-SHA256(device secret, body))

The tag covers the exact body bytes as sent, so no canonical JSON is needed here and either runtime's
json module may write the body. Every body carries "v" (format version), "kind", "dev" (device id) and
"seq" (the board's sequence number: monotonically increasing, kept across reboots; a summary or error
carries the seq of the board frame it answers). Bodies by kind:

    fp       schema (str), fields (categorical dict), vec (list of int8)
    outcome  re (seq of the reading it explains), label (str), value (number, optional),
             weight (number in (0, 1], optional)
    summary  re (seq of the fp answered), enough (bool), n, top ([[label, share_permille], ...]),
             conf (0-1000), mean (number or null), level (0 = exact), hops, ms
    error    code (short word), msg (text)

decode() checks size, tag (in constant time), JSON, kind, device and every field's type before it
returns the body dict; anything wrong raises FrameError with a stable `reason` for metrics (its text
comes from qis.errtext, loaded only then: a board does not hold the texts).
"""

import json
import sys

from qis.errors import FrameError, why
from qis.hmac256 import digest_equal, hmac_sha256
from qis.topics import KINDS, check_id

VERSION = 1
TAG_BYTES = 32
MAX_FRAME_BYTES = 1024
MAX_VECTOR = 64
MAX_FIELDS = 32
MAX_SEQ = 2**53 - 1  # largest integer every JSON reader keeps exactly
_JSON_TAKES_VIEW = sys.implementation.name != "cpython"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def encode_frame(body, secret):
    """Serialise a body dict and append its tag. Raises FrameError if the result would be oversize."""
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) + TAG_BYTES > MAX_FRAME_BYTES:
        raise FrameError("size", why("framesize", len(data) + TAG_BYTES, MAX_FRAME_BYTES))
    return data + hmac_sha256(secret, data)


def _base(kind, device, seq):
    check_id(device, "device id")
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        _fail("seqgot", seq)
    return {"v": VERSION, "kind": kind, "dev": device, "seq": seq}


def encode_fp(device, seq, fingerprint, secret):
    """`fingerprint` is a qis.schema.Fingerprint (or anything with .fields and .vector)."""
    body = _base("fp", device, seq)
    body["schema"] = fingerprint.fields.get("schema")
    body["fields"] = fingerprint.fields
    body["vec"] = fingerprint.vector
    return encode_frame(body, secret)


def encode_outcome(device, seq, reading_seq, label, secret, value=None, weight=None):
    body = _base("outcome", device, seq)
    body["re"] = reading_seq
    body["label"] = label
    if value is not None:
        body["value"] = value
    if weight is not None:
        body["weight"] = weight
    _check_outcome(body)
    return encode_frame(body, secret)


def __getattr__(name):
    # encode_summary and encode_error (gateway -> board) and split_frame live in qis.gwframes: a board
    # never uses them, so it does not hold their code. Module __getattr__ works on CPython (PEP 562)
    # and MicroPython.
    if name in ("encode_summary", "encode_error", "split_frame"):
        from qis import gwframes

        return getattr(gwframes, name)
    raise AttributeError(name)


def _views(payload):
    """(body, tag) as memoryviews of the payload (no copies: a board decodes in a few KB of heap)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FrameError("type", why("paytype"))
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError("size", why("paysize", len(payload), MAX_FRAME_BYTES))
    if len(payload) <= TAG_BYTES + 2:
        raise FrameError("size", why("payshort", len(payload)))
    view = memoryview(payload)
    return view[:-TAG_BYTES], view[-TAG_BYTES:]


def decode(payload, secret, kind=None, device=None):
    """Verify and parse a frame; return its body dict. `kind`/`device`, when given, must match."""
    data, tag = _views(payload)
    if not digest_equal(hmac_sha256(secret, data), tag):
        raise FrameError("tag", why("tag"))
    try:
        # MicroPython parses the memoryview in place; CPython's json wants bytes (and a TypeError
        # per frame to find that out cost the gateway ~5% of its CPU)
        body = json.loads(data if _JSON_TAKES_VIEW else bytes(data))
    except (ValueError, UnicodeError):
        raise FrameError("json", why("json"))
    if not isinstance(body, dict):
        raise FrameError("json", why("object"))
    if body.get("v") != VERSION:
        raise FrameError("version", why("version", body.get("v")))
    got_kind = body.get("kind")
    if got_kind not in KINDS:
        raise FrameError("kind", why("kind", got_kind))
    if kind is not None and got_kind != kind:
        raise FrameError("kind", why("wrongkind", got_kind, kind))
    dev = body.get("dev")
    if not isinstance(dev, str):
        _fail("dev")
    if device is not None and dev != device:
        raise FrameError("device", why("device", dev, device))
    seq = body.get("seq")
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        _fail("seq")
    check = _CHECKS.get(got_kind)
    if check is None:  # fp and status: only a gateway decodes them (checks in qis.gwframes)
        from qis.gwframes import check_board_frame

        check_board_frame(got_kind, body)
    else:
        check(body)
    return body


def _fail(key, *args):
    raise FrameError("field", why(key, *args))


def _check_outcome(body):
    re = body.get("re")
    if not _is_int(re) or re < 0:
        _fail("out.re")
    label = body.get("label")
    if not isinstance(label, str) or not 0 < len(label) <= 64:
        _fail("out.label")
    if "value" in body and not _is_number(body["value"]):
        _fail("out.value")
    if "weight" in body:
        weight = body["weight"]
        if not _is_number(weight) or not 0 < weight <= 1:
            _fail("out.weight")


def _check_summary(body):
    if not isinstance(body.get("enough"), bool):
        _fail("sum.enough")
    for name in ("re", "n", "conf", "level", "hops", "ms"):
        value = body.get(name)
        if not _is_int(value) or value < 0:
            _fail("sum.int", name)
    top = body.get("top")
    if not isinstance(top, list):
        _fail("sum.top")
    for item in top:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_int(item[1])):
            _fail("sum.entry")
    mean = body.get("mean")
    if mean is not None and not _is_number(mean):
        _fail("sum.mean")


def _check_error(body):
    if not isinstance(body.get("code"), str) or not isinstance(body.get("msg"), str):
        _fail("err.text")


_CHECKS = {
    "outcome": _check_outcome,
    "summary": _check_summary,
    "error": _check_error,
}
