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
returns the body dict; anything wrong raises FrameError with a stable `reason` for metrics.
"""

import json

from qis.errors import FrameError
from qis.hmac256 import digest_equal, hmac_sha256
from qis.topics import KINDS, check_id

VERSION = 1
TAG_BYTES = 32
MAX_FRAME_BYTES = 1024
MAX_VECTOR = 64
MAX_FIELDS = 32
MAX_SEQ = 2**53 - 1  # largest integer every JSON reader keeps exactly


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def encode_frame(body, secret):
    """Serialise a body dict and append its tag. Raises FrameError if the result would be oversize."""
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) + TAG_BYTES > MAX_FRAME_BYTES:
        raise FrameError("size", "frame of %d bytes exceeds %d" % (len(data) + TAG_BYTES, MAX_FRAME_BYTES))
    return data + hmac_sha256(secret, data)


def _base(kind, device, seq):
    check_id(device, "device id")
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise FrameError("field", "seq must be an integer in 0..2**53-1, got %r" % (seq,))
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
    # encode_summary and encode_error (gateway -> board) live in qis.gwframes: a board never builds them,
    # so it does not hold their code. Module __getattr__ works on CPython (PEP 562) and MicroPython.
    if name in ("encode_summary", "encode_error"):
        from qis import gwframes

        return getattr(gwframes, name)
    raise AttributeError(name)


def _views(payload):
    """(body, tag) as memoryviews of the payload (no copies: a board decodes in a few KB of heap)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FrameError("type", "payload must be bytes")
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError("size", "payload of %d bytes exceeds %d" % (len(payload), MAX_FRAME_BYTES))
    if len(payload) <= TAG_BYTES + 2:
        raise FrameError("size", "payload of %d bytes is too short for a frame" % len(payload))
    view = memoryview(payload)
    return view[:-TAG_BYTES], view[-TAG_BYTES:]


def split_frame(payload):
    """(body bytes, tag) of a payload, FrameError when it cannot be a frame at all."""
    data, tag = _views(payload)
    return bytes(data), bytes(tag)


def decode(payload, secret, kind=None, device=None):
    """Verify and parse a frame; return its body dict. `kind`/`device`, when given, must match."""
    data, tag = _views(payload)
    if not digest_equal(hmac_sha256(secret, data), tag):
        raise FrameError("tag", "HMAC tag does not match (wrong secret or tampered frame)")
    try:
        try:
            body = json.loads(data)  # MicroPython parses the memoryview in place
        except TypeError:
            body = json.loads(bytes(data))  # CPython's json wants str/bytes
    except (ValueError, UnicodeError):
        raise FrameError("json", "body is not valid JSON")
    if not isinstance(body, dict):
        raise FrameError("json", "body must be a JSON object")
    if body.get("v") != VERSION:
        raise FrameError("version", "unsupported frame version %r" % (body.get("v"),))
    got_kind = body.get("kind")
    if got_kind not in KINDS:
        raise FrameError("kind", "unknown frame kind %r" % (got_kind,))
    if kind is not None and got_kind != kind:
        raise FrameError("kind", "frame kind %r arrived where %r was expected" % (got_kind, kind))
    dev = body.get("dev")
    if not isinstance(dev, str):
        raise FrameError("field", "dev must be a string")
    if device is not None and dev != device:
        raise FrameError("device", "frame names device %r but came from %r" % (dev, device))
    seq = body.get("seq")
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise FrameError("field", "seq must be an integer in 0..2**53-1")
    check = _CHECKS.get(got_kind)
    if check is None:  # fp and status: only a gateway decodes them (checks in qis.gwframes)
        from qis.gwframes import check_board_frame

        check_board_frame(got_kind, body)
    else:
        check(body)
    return body


def _fail(message):
    raise FrameError("field", message)


def _check_outcome(body):
    re = body.get("re")
    if not _is_int(re) or re < 0:
        _fail("outcome.re must be the non-negative seq of a reading")
    label = body.get("label")
    if not isinstance(label, str) or not 0 < len(label) <= 64:
        _fail("outcome.label must be a string of 1-64 characters")
    if "value" in body and not _is_number(body["value"]):
        _fail("outcome.value must be a number")
    if "weight" in body:
        weight = body["weight"]
        if not _is_number(weight) or not 0 < weight <= 1:
            _fail("outcome.weight must be a number in (0, 1]")


def _check_summary(body):
    if not isinstance(body.get("enough"), bool):
        _fail("summary.enough must be a boolean")
    for name in ("re", "n", "conf", "level", "hops", "ms"):
        value = body.get(name)
        if not _is_int(value) or value < 0:
            _fail("summary.%s must be a non-negative integer" % name)
    top = body.get("top")
    if not isinstance(top, list):
        _fail("summary.top must be a list")
    for item in top:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_int(item[1])):
            _fail("summary.top entries must be [label, share_permille]")
    mean = body.get("mean")
    if mean is not None and not _is_number(mean):
        _fail("summary.mean must be a number or null")


def _check_error(body):
    if not isinstance(body.get("code"), str) or not isinstance(body.get("msg"), str):
        _fail("error.code and error.msg must be strings")


_CHECKS = {
    "outcome": _check_outcome,
    "summary": _check_summary,
    "error": _check_error,
}
