"""MQTT topics: qis/v1/<site>/<device>/<kind> (docs/protocol.md, Topics).

Board -> gateway: fp, outcome, status (retained; "offline" as last will). Gateway -> board: summary
(retained, so a reconnecting board gets the latest), error. Site and device ids are 1-64 characters of
[A-Za-z0-9_.-]: never the MQTT wildcards + and #, never /, never empty.
"""

from qis.errors import TopicError, why

PREFIX = "qis/v1"
BOARD_KINDS = ("fp", "outcome", "status")
GATEWAY_KINDS = ("summary", "error")
KINDS = BOARD_KINDS + GATEWAY_KINDS
MAX_ID_LEN = 64


def _id_byte_ok(b):
    return 97 <= b <= 122 or 65 <= b <= 90 or 48 <= b <= 57 or b in b"_.-"


def check_id(value, what="id"):
    """Raise TopicError unless `value` is a valid site or device id; return it."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise TopicError(why("idlen", what, MAX_ID_LEN, value))
    # Bytes, not characters: iterating a str interns every character as a qstr on MicroPython (board RAM).
    try:
        data = value.encode()
    except UnicodeError:  # CPython: a lone surrogate
        data = b"\x80"
    for b in data:
        if not _id_byte_ok(b):
            for ch in value:  # name the offending character
                if ord(ch) > 127 or not _id_byte_ok(ord(ch)):
                    raise TopicError(why("idchar", what, value, ch))
    return value


def topic(site, device, kind):
    check_id(site, "site")
    check_id(device, "device id")
    if kind not in KINDS:
        raise TopicError(why("topickind", kind, ", ".join(KINDS)))
    return "%s/%s/%s/%s" % (PREFIX, site, device, kind)


def __getattr__(name):
    # parse_topic(name) -> (site, device, kind) and subscription(kind, site="+", device="+") are
    # gateway-side helpers in qis.topicparse, loaded on first use (a board only builds its own topics).
    if name in ("parse_topic", "subscription"):
        from qis import topicparse

        return getattr(topicparse, name)
    raise AttributeError(name)
