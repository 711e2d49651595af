"""Optional Home Assistant MQTT discovery: each board's latest summary as a sensor.

How it works: for every active board the gateway publishes a retained discovery config at
`<prefix>/sensor/qis_<site>_<device>/config` (Home Assistant's MQTT discovery format) naming a plain
JSON state topic `qis-ha/<site>/<device>/state`. Board summaries are HMAC-tagged frames HA cannot parse,
so after each summary the gateway also publishes a small retained JSON state there: the leading outcome
is the sensor's value, the rest (share, n, confidence, level, hops) are attributes.
- Entity ids: `default_entity_id` "sensor.<slug>" (what Home Assistant 2025.10+ reads; the older
  `object_id` is deprecated there and refused from 2026.4).
- Availability: the gateway's own topic `qis-ha/gateway/<client id>/availability`, "online" (retained)
  on every connect, "offline" when it stops and, as its MQTT will, when it dies; a sensor shows
  "unavailable" while no gateway answers for it.
- Registry changes need no restart: `sync` (called every few seconds) announces new boards and clears
  the configs of revoked or removed ones (the empty retained payload Home Assistant reads as "remove").
  The gateway also watches the retained configs under `<prefix>/sensor/+/config`, so a config left by a
  board removed while the gateway was down is cleared when it comes back.
- Home Assistant announces a restart with "online" on `<prefix>/status` (its birth message); every
  discovery config is then sent again, as HA's documentation asks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from qis_gateway.registry import DeviceRecord

if TYPE_CHECKING:
    from qis_gateway.evidence import BoardSummary

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]
STATE_PREFIX = "qis-ha"
ONLINE, OFFLINE = b"online", b"offline"


def state_topic(site: str, device: str) -> str:
    return "%s/%s/%s/state" % (STATE_PREFIX, site, device)


def availability_topic(client_id: str) -> str:
    return "%s/gateway/%s/availability" % (STATE_PREFIX, client_id)


def slug(text: str) -> str:
    """Home Assistant's object-id rules: lower case a-z, 0-9 and single underscores, none at the ends."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_")


def unique_id(record: DeviceRecord) -> str:
    return "qis_%s_%s" % (record.site, record.device_id)


class HomeAssistant:
    def __init__(self, publish: Publish, prefix: str = "homeassistant", client_id: str = "qis-gateway") -> None:
        self.publish = publish
        self.prefix = prefix.rstrip("/")
        self.availability = availability_topic(client_id)
        self.announced: dict[str, str] = {}  # unique id -> config topic, for the boards announced

    @property
    def birth_topic(self) -> str:
        return "%s/status" % self.prefix

    @property
    def config_filter(self) -> str:
        return "%s/sensor/+/config" % self.prefix

    def will(self) -> tuple[str, bytes, int, bool]:
        return self.availability, OFFLINE, 1, True

    def config_topic(self, uid: str) -> str:
        return "%s/sensor/%s/config" % (self.prefix, uid)

    def discovery(self, record: DeviceRecord) -> tuple[str, dict[str, Any]]:
        uid = unique_id(record)
        config = {
            "name": "QIS outcome",
            "unique_id": uid + "_outcome",
            "default_entity_id": "sensor.%s" % slug(uid + "_outcome"),
            "state_topic": state_topic(record.site, record.device_id),
            "value_template": "{{ value_json.outcome }}",
            "json_attributes_topic": state_topic(record.site, record.device_id),
            "availability_topic": self.availability,
            "payload_available": ONLINE.decode(),
            "payload_not_available": OFFLINE.decode(),
            "icon": "mdi:lightbulb-on-outline",
            "device": {"identifiers": [uid], "name": "%s (%s)" % (record.device_id, record.site),
                       "manufacturer": "qis-edge", "model": "QIS board"},
            "origin": {"name": "qis-edge"},
        }
        return self.config_topic(uid), config

    def _announce_one(self, record: DeviceRecord) -> None:
        topic, config = self.discovery(record)
        self.publish(topic, json.dumps(config).encode(), 1, True)
        self.announced[unique_id(record)] = topic

    def _clear(self, uid: str, topic: str) -> None:
        self.publish(topic, b"", 1, True)  # Home Assistant removes the entity; the broker drops the retained copy
        self.announced.pop(uid, None)

    def announce(self, records: Iterable[DeviceRecord]) -> int:
        """Send every active board's config (and clear revoked ones'); marks the gateway online."""
        count = 0
        for record in records:
            if record.revoked:
                self._clear(unique_id(record), self.config_topic(unique_id(record)))
                continue
            self._announce_one(record)
            count += 1
        self.publish(self.availability, ONLINE, 1, True)
        log.info("Home Assistant discovery sent for %d board(s)", count)
        return count

    def sync(self, records: Iterable[DeviceRecord]) -> tuple[int, int]:
        """Announce boards not announced yet and clear those revoked or removed since: (added, cleared)."""
        active = {unique_id(r): r for r in records if not r.revoked}
        added = [r for uid, r in active.items() if uid not in self.announced]
        gone = [(uid, topic) for uid, topic in self.announced.items() if uid not in active]
        for record in added:
            self._announce_one(record)
        for uid, topic in gone:
            self._clear(uid, topic)
        if added or gone:
            log.info("Home Assistant: %d board(s) added, %d removed", len(added), len(gone))
        return len(added), len(gone)

    def on_config(self, topic: str, payload: bytes, records: Iterable[DeviceRecord]) -> bool:
        """A retained config under our prefix: clear it if it is ours and its board is no longer active."""
        parts = topic.split("/")
        if len(parts) < 3 or not payload or not parts[-2].startswith("qis_"):
            return False
        active = {unique_id(r) for r in records if not r.revoked}
        if parts[-2] in active:
            return False
        self._clear(parts[-2], topic)
        log.info("Home Assistant: cleared the config of %s (no longer an active board)", parts[-2])
        return True

    def on_birth(self, payload: bytes, records: Iterable[DeviceRecord]) -> bool:
        """Re-announce when Home Assistant says it is online again."""
        if payload.strip() == ONLINE:
            self.announce(records)
            return True
        return False

    def offline(self) -> None:
        self.publish(self.availability, OFFLINE, 1, True)

    def on_summary(self, record: DeviceRecord, summary: BoardSummary) -> None:
        top = [list(item) for item in summary.top]
        state = {
            "outcome": top[0][0] if top and summary.enough else "unknown",
            "share_pct": round(top[0][1] / 10.0, 1) if top else None,
            "top": top, "n": summary.n, "enough": summary.enough,
            "confidence_pct": round(summary.conf / 10.0, 1), "mean": summary.mean,
            "level": summary.level, "hops": summary.hops, "ms": summary.ms,
        }
        self.publish(state_topic(record.site, record.device_id), json.dumps(state).encode(), 1, True)
