"""A check of an MQTT discovery payload for a Home Assistant `sensor`, written from the rules in Home
Assistant core's MQTT integration (homeassistant/components/mqtt/: schemas.py MQTT_ENTITY_COMMON_SCHEMA
and the availability schemas, config.py MQTT_RO_SCHEMA, sensor.py _PLATFORM_SCHEMA_BASE, as of the
2026 sources; no code copied). Home Assistant core itself cannot run here: it needs Python 3.13 and this
machine (Debian Bookworm) has 3.11 only.

What it enforces, as Home Assistant does:
- every key is one the sensor platform knows (Home Assistant silently drops unknown keys from discovery,
  which is how a removed option like `object_id` stops working without an error); `object_id` itself is
  refused (deprecated in 2025.10, removed in 2026.4; `default_entity_id` replaces it);
- `state_topic` is required; topics are valid subscribe topics (non-empty, no NUL, `+`/`#` only as
  whole levels, `#` last); `availability_topic` and `availability` exclude each other;
- `default_entity_id` is a valid entity id "sensor.<object id>" (lower-case a-z, 0-9, `_`, no leading,
  trailing or doubled `_`);
- `device` has at least one identifier or connection, its values strings; `origin` has a `name`;
- `icon` is "prefix:name"; `unique_id`, `name`, templates and payloads are strings; `qos` 0..2.
Returns the list of problems (empty = valid).
"""

from __future__ import annotations

import re
from typing import Any

_AVAILABILITY = {"availability_topic", "availability_template", "payload_available", "payload_not_available",
                 "availability_mode", "availability"}
_COMMON = {"device", "entity_picture", "origin", "enabled_by_default", "entity_category", "icon",
           "json_attributes_topic", "json_attributes_template", "default_entity_id", "message_expiry_interval",
           "unique_id", "visible_by_default"}
_READ_ONLY = {"state_topic", "value_template", "qos", "encoding", "platform"}
_SENSOR = {"device_class", "expire_after", "force_update", "last_reset_value_template", "name", "options",
           "suggested_display_precision", "state_class", "unit_of_measurement"}
ALLOWED = _AVAILABILITY | _COMMON | _READ_ONLY | _SENSOR
_DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
           "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
_OBJECT_ID = r"(?!_)(?!.*__)[0-9a-z_]+(?<!_)"
ENTITY_ID = re.compile(r"^%s\.%s$" % (_OBJECT_ID, _OBJECT_ID))


def topic_problem(topic: Any, name: str) -> str | None:
    if not isinstance(topic, str) or not topic:
        return "%s must be a non-empty string" % name
    if "\0" in topic or len(topic.encode()) > 65535:
        return "%s is not a valid MQTT topic" % name
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            return "%s has a misplaced wildcard: %r" % (name, topic)
    return None


def check_sensor_discovery(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "object_id" in payload:
        problems.append("object_id is removed in Home Assistant 2026.4: use default_entity_id")
    unknown = sorted(set(payload) - ALLOWED - {"object_id"})
    if unknown:
        problems.append("keys Home Assistant's sensor platform does not know (dropped): %s" % ", ".join(unknown))
    if "state_topic" not in payload:
        problems.append("state_topic is required")
    for key in ("state_topic", "json_attributes_topic", "availability_topic"):
        if key in payload:
            problem = topic_problem(payload[key], key)
            if problem:
                problems.append(problem)
    if "availability_topic" in payload and "availability" in payload:
        problems.append("availability_topic and availability exclude each other")
    entity_id = payload.get("default_entity_id")
    if entity_id is not None and (not isinstance(entity_id, str) or not ENTITY_ID.match(entity_id)
                                  or not entity_id.startswith("sensor.")):
        problems.append("default_entity_id must be 'sensor.<object id>' (a-z, 0-9, single _), got %r" % entity_id)
    for key in ("unique_id", "name", "value_template", "json_attributes_template", "payload_available",
                "payload_not_available", "availability_template"):
        if key in payload and not isinstance(payload[key], str):
            problems.append("%s must be a string" % key)
    if "icon" in payload and (not isinstance(payload["icon"], str) or ":" not in payload["icon"]):
        problems.append("icon must be 'prefix:name'")
    if "qos" in payload and payload["qos"] not in (0, 1, 2):
        problems.append("qos must be 0, 1 or 2")
    device = payload.get("device")
    if device is not None:
        if not isinstance(device, dict):
            problems.append("device must be an object")
        else:
            if set(device) - _DEVICE:
                problems.append("device keys unknown: %s" % ", ".join(sorted(set(device) - _DEVICE)))
            ids = device.get("identifiers")
            ids = [ids] if isinstance(ids, str) else ids
            if not ids and not device.get("connections"):
                problems.append("device needs at least one identifier or connection")
            if ids and not all(isinstance(i, str) for i in ids):
                problems.append("device identifiers must be strings")
            for key in _DEVICE - {"identifiers", "connections"}:
                if key in device and not isinstance(device[key], str):
                    problems.append("device.%s must be a string" % key)
    origin = payload.get("origin")
    if origin is not None and (not isinstance(origin, dict) or not isinstance(origin.get("name"), str)):
        problems.append("origin needs a name")
    return problems
