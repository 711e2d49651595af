"""`qis-device provision`: register a board with the gateway and write its device.json in one step.

How it works: the gateway's registry (qis_gateway.registry, docs/device.md) creates the device entry with a
fresh 32-byte HMAC secret; `board_config` turns the record into the device.json dict, which is written
with mode 0600 (it holds the secret) and refused if the file exists, then checked with the same
required-field check `deploy` uses. The registry is imported lazily so `qis-device` works on hosts
without the gateway installed. If writing the file fails after the entry was created, the entry is
revoked again so the id is not left half-provisioned with a secret nobody has.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from qis_firmware import config as config_mod
from qis_firmware.errors import ProvisionError, UsageError

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "machine_health.json"


def parse_broker(text: str) -> tuple[str, int]:
    """'HOST:PORT' or 'HOST' (port 1883) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, "1883"
    if not host:
        raise UsageError("--broker must be HOST:PORT, got %r" % text)
    try:
        port = int(port_text)
    except ValueError as exc:
        raise UsageError("--broker port must be a number, got %r" % port_text) from exc
    if not 0 < port < 65536:
        raise UsageError("--broker port must be 1..65535, got %d" % port)
    return host, port


def parse_fixed(items: list[str]) -> dict[str, Any]:
    """['machine_class=pump', 'line=3'] -> {'machine_class': 'pump', 'line': 3} (ints stay ints)."""
    fixed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError("--fixed takes KEY=VALUE, got %r" % item)
        fixed[key] = int(value) if value.lstrip("-").isdigit() else value
    return fixed


def provision(device_id: str, *, gateway_db: Path, site: str, broker: str, out: Path,
              schema: str = DEFAULT_SCHEMA, fixed: dict[str, Any] | None = None,
              wifi: tuple[str, str] | None = None, sensor: dict[str, Any] | None = None,
              anonymous: bool = False) -> dict[str, Any]:
    """Create the registry entry and write device.json; return the config written."""
    if out.exists():
        raise UsageError("%s exists; refusing to overwrite a board config (it may hold a live secret). "
                         "Pass another --out or remove it." % out)
    try:
        from qis_gateway.registry import Registry, board_config
    except ImportError as exc:
        raise ProvisionError("the gateway package (qis_gateway.registry) is not installed on this host; "
                             "provision on the gateway, or install qis-edge fully: %s" % exc) from exc
    host, port = parse_broker(broker)
    from qis_gateway.provisioning import ProvisioningError, check_fixed, packaged_schema

    try:  # the same label check as `qis-gateway device add`, before the registry is touched
        check_fixed(fixed or {}, packaged_schema(schema), schema)
    except ProvisioningError as exc:
        raise UsageError(str(exc)) from exc
    extra: dict[str, Any] = {}
    if anonymous:  # otherwise the board logs in as its id with the password `qis-gateway broker-config` sets
        extra["broker_user"] = None
    if fixed:
        extra["fixed"] = fixed
    if wifi:
        extra["wifi"] = {"ssid": wifi[0], "password": wifi[1]}
    if sensor:
        extra["sensor"] = sensor
    registry = Registry(gateway_db)
    try:
        try:
            record = registry.add(device_id, site)
        except ValueError as exc:
            raise ProvisionError("gateway registry %s refused %r: %s" % (gateway_db, device_id, exc)) from exc
        config = board_config(record, host, port, schema, **extra)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(config, fh, indent=2, sort_keys=True)
                fh.write("\n")
        except OSError as exc:
            registry.revoke(device_id)
            raise ProvisionError("could not write %s (%s); the registry entry %r was revoked again"
                                 % (out, exc, device_id)) from exc
    finally:
        registry.close()
    config_mod.load_config(out)  # the same check deploy runs; a failure here is our bug, reported clearly
    log.info("provisioned %s/%s -> %s", site, device_id, out)
    return config
