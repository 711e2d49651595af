"""Optional Home Assistant MQTT discovery: each board's latest summary as a sensor.

How it works: for every active board the gateway publishes a retained discovery config at
`<prefix>/sensor/qis_<site>_<device>/config` (Home Assistant's MQTT discovery format) naming a plain
JSON state topic `qis-ha/<site>/<device>/state`. Board summaries are HMAC-tagged frames HA cannot parse,
so after each summary the gateway also publishes a small retained JSON state there: the leading outcome
is the sensor's value, the rest (share, n, confidence, level, hops) are attributes. Home Assistant
announces a restart with "online" on `<prefix>/status` (its birth message); the gateway then re-sends
every discovery config, as HA's documentation asks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from qis_gateway.registry import DeviceRecord

if TYPE_CHECKING:
    from qis_gateway.evidence import BoardSummary

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]
STATE_PREFIX = "qis-ha"


def state_topic(site: str, device: str) -> str:
    return "%s/%s/%s/state" % (STATE_PREFIX, site, device)


class HomeAssistant:
    def __init__(self, publish: Publish, prefix: str = "homeassistant") -> None:
        self.publish = publish
        self.prefix = prefix.rstrip("/")

    @property
    def birth_topic(self) -> str:
        return "%s/status" % self.prefix

    def discovery(self, record: DeviceRecord) -> tuple[str, dict[str, Any]]:
        uid = "qis_%s_%s" % (record.site, record.device_id)
        config = {
            "name": "QIS outcome",
            "unique_id": uid + "_outcome",
            "object_id": uid + "_outcome",
            "state_topic": state_topic(record.site, record.device_id),
            "value_template": "{{ value_json.outcome }}",
            "json_attributes_topic": state_topic(record.site, record.device_id),
            "icon": "mdi:lightbulb-on-outline",
            "device": {"identifiers": [uid], "name": "%s (%s)" % (record.device_id, record.site),
                       "manufacturer": "qis-edge", "model": "QIS board"},
        }
        return "%s/sensor/%s/config" % (self.prefix, uid), config

    def announce(self, records: Iterable[DeviceRecord]) -> int:
        count = 0
        for record in records:
            if record.revoked:
                continue
            topic, config = self.discovery(record)
            self.publish(topic, json.dumps(config).encode(), 1, True)
            count += 1
        log.info("Home Assistant discovery sent for %d board(s)", count)
        return count

    def on_birth(self, payload: bytes, records: Iterable[DeviceRecord]) -> bool:
        """Re-announce when Home Assistant says it is online again."""
        if payload.strip() == b"online":
            self.announce(records)
            return True
        return False

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
