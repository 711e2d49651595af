"""Gateway-side topic helpers behind qis.topics.parse_topic/subscription, kept apart so a board (which
only builds its own topics) does not hold their code; qis.topics imports this module lazily."""

from qis.errors import TopicError
from qis.topics import KINDS, PREFIX, check_id


def parse_topic(name):
    """Split a topic into (site, device, kind); TopicError for anything that is not ours."""
    if isinstance(name, (bytes, bytearray)):
        try:
            name = bytes(name).decode()
        except UnicodeError:
            raise TopicError("topic is not UTF-8")
    parts = name.split("/")
    if len(parts) != 5 or parts[0] + "/" + parts[1] != PREFIX:
        raise TopicError("topic %r is not %s/<site>/<device>/<kind>" % (name, PREFIX))
    site = check_id(parts[2], "site")
    device = check_id(parts[3], "device id")
    if parts[4] not in KINDS:
        raise TopicError("topic %r has unknown kind %r" % (name, parts[4]))
    return site, device, parts[4]


def subscription(kind, site="+", device="+"):
    """A subscription filter, e.g. subscription("fp") -> "qis/v1/+/+/fp" for a gateway."""
    if kind not in KINDS and kind != "#":
        raise TopicError("unknown topic kind %r" % kind)
    return "%s/%s/%s/%s" % (PREFIX, site, device, kind)
