"""MQTT topics: qis/v1/<site>/<device>/<kind> (DESIGN.md, device <-> gateway).

Board -> gateway: fp, outcome, status (retained; "offline" as last will). Gateway -> board: summary
(retained, so a reconnecting board gets the latest), error. Site and device ids are 1-64 characters of
[A-Za-z0-9_.-]: never the MQTT wildcards + and #, never /, never empty.
"""

from qis.errors import TopicError

PREFIX = "qis/v1"
BOARD_KINDS = ("fp", "outcome", "status")
GATEWAY_KINDS = ("summary", "error")
KINDS = BOARD_KINDS + GATEWAY_KINDS
MAX_ID_LEN = 64
_ID_EXTRA = "_.-"


def check_id(value, what="id"):
    """Raise TopicError unless `value` is a valid site or device id; return it."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise TopicError("%s must be a string of 1-%d characters, got %r" % (what, MAX_ID_LEN, value))
    for ch in value:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in _ID_EXTRA):
            raise TopicError("%s %r has %r; use only letters, digits and _ . -" % (what, value, ch))
    return value


def topic(site, device, kind):
    check_id(site, "site")
    check_id(device, "device id")
    if kind not in KINDS:
        raise TopicError("unknown topic kind %r; expected one of %s" % (kind, ", ".join(KINDS)))
    return "%s/%s/%s/%s" % (PREFIX, site, device, kind)


def __getattr__(name):
    # parse_topic(name) -> (site, device, kind) and subscription(kind, site="+", device="+") are
    # gateway-side helpers in qis.topicparse, loaded on first use (a board only builds its own topics).
    if name in ("parse_topic", "subscription"):
        from qis import topicparse

        return getattr(topicparse, name)
    raise AttributeError(name)
