"""Shedding an fp on arrival, before its admission: under sustained overload most frames are shed, so
what shedding one costs decides how much of the gateway is left for the readings it answers.

How it works: while `AnswerQueue.overloaded` says an arriving fp would be shed anyway (answers.py), the
intake asks `authentic_fresh(topic, payload)` first. It checks only what the signed `busy` answer needs
and what makes it safe: the topic names a known, unrevoked device of that site, the frame's tag is right
(CPython's C HMAC), the body is a version-1 fp of that device, and its seq is above the device's last
accepted one. Such a frame is then not admitted -- not recorded, no reading stored, its seq not
consumed (no SQLite write at all) -- but PUBACKed and answered `busy` (`qis_gateway_shed_total{reason=
"arrival"}`). That costs ~1/4 of a full admission. Anything else (a bad tag, a replay or duplicate, an
outcome, a frame this does not recognise) goes through the full admission as before, so refusals and
duplicates are answered exactly as they would be, and outcomes are never shed.

What a board loses: nothing it relies on. It is told `busy` for that seq, as for any shed reading, and
backs off; an outcome it might still send for that reading is refused `unknown_reading`, where a reading
shed after admission could have taken one. Not consuming the seq is safe: the board's next frame carries
a higher one, and until then a copy of this frame replayed is only this reading delivered late.
"""

from __future__ import annotations

import hmac
import json

from qis import messages
from qis.errors import TopicError
from qis.topics import parse_topic

from qis_gateway.frametag import tag
from qis_gateway.registry import DeviceRecord, Registry


def authentic_fresh(registry: Registry, topic_name: str, payload: bytes) -> tuple[DeviceRecord, int] | None:
    """(device, seq) of an authentic fp with a fresh seq, to be shed unadmitted; None: admit it as usual."""
    try:
        site, device_id, kind = parse_topic(topic_name)
    except TopicError:
        return None
    if kind != "fp" or not messages.TAG_BYTES + 2 < len(payload) <= messages.MAX_FRAME_BYTES:
        return None
    record = registry.get(device_id)
    if record is None or record.revoked or record.site != site:
        return None
    data, sent_tag = payload[:-messages.TAG_BYTES], payload[-messages.TAG_BYTES:]
    if not hmac.compare_digest(tag(record.secret, data), sent_tag):
        return None
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("v") != messages.VERSION or body.get("kind") != "fp" \
            or body.get("dev") != device_id:
        return None
    seq = body.get("seq")
    if type(seq) is not int or not record.last_seq < seq <= messages.MAX_SEQ:
        return None
    return record, seq
