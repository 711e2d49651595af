"""Provisioning a board: the checks and the device.json writing shared by `qis-gateway device add|rekey`
and `qis-device provision`.

How it works: everything that can be wrong with a request is checked before anything is written (the id
and site, `--fixed KEY=VALUE` labels against the board's schema, the broker address, the output file),
so a refused request leaves neither a registry entry nor a file behind. device.json holds the board's
secret: it is created with mode 0600 from the start (never written first and chmod-ed after).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from qis.errors import TopicError
from qis.topics import check_id


class ProvisioningError(ValueError):
    """A provisioning request that cannot be carried out; the one-line message says why."""


def parse_fixed(items: list[str]) -> dict[str, Any]:
    """['machine_class=pump', 'line=3'] -> {'machine_class': 'pump', 'line': 3} (integers stay integers)."""
    fixed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ProvisioningError("--fixed takes KEY=VALUE (e.g. --fixed machine_class=pump), got %r" % item)
        if key in fixed:
            raise ProvisioningError("--fixed %s is given twice" % key)
        fixed[key] = int(value) if value.lstrip("-").isdigit() else value
    return fixed


def packaged_schema(name: str) -> dict[str, Any] | None:
    """The schema JSON shipped with qis under this file name, or None (a schema of your own)."""
    entry = resources.files("qis").joinpath("schemas").joinpath(Path(name).name)
    try:
        return json.loads(entry.read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def check_fixed(fixed: dict[str, Any], schema: dict[str, Any] | None, schema_name: str) -> None:
    """Each fixed label must be one of the schema's inputs; a label field's value one of its labels."""
    if schema is None:
        return
    inputs: dict[str, list[str] | None] = {}
    for field in schema.get("categorical", []):
        inputs[field["input"]] = list(field["labels"]) if field.get("kind") == "label" else None
    for field in schema.get("continuous", []):
        inputs.setdefault(field["input"], None)
    for key, value in fixed.items():
        if key not in inputs:
            raise ProvisioningError("--fixed %s: %s has no input %r (its inputs: %s)" % (
                key, schema_name, key, ", ".join(sorted(inputs))))
        labels = inputs[key]
        if labels is not None and value not in labels:
            raise ProvisioningError("--fixed %s=%s: %s allows %s" % (key, value, schema_name, " | ".join(labels)))


def check_request(device_id: str, site: str, fixed: dict[str, Any], schema_name: str, broker_host: str,
                  broker_port: int, out: Path, replace: bool = False) -> None:
    """Every check that needs no registry; raises ProvisioningError."""
    try:
        check_id(device_id, "device id")
        check_id(site, "site")
    except TopicError as exc:
        raise ProvisioningError(str(exc)) from exc
    if not broker_host:
        raise ProvisioningError("the broker host is empty")
    if not 0 < broker_port < 65536:
        raise ProvisioningError("the broker port must be 1..65535, got %d" % broker_port)
    check_fixed(fixed, packaged_schema(schema_name), schema_name)
    if out.exists() and not replace:
        raise ProvisioningError("%s exists; refusing to overwrite a board config (it may hold a live secret): "
                                "pass another --out or remove it" % out)
    parent = out.parent if str(out.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ProvisioningError("cannot write %s: permission denied on %s" % (out, existing))


def write_board_config(out: Path, config: dict[str, Any], replace: bool = False) -> None:
    """Write device.json with mode 0600 from its creation; `replace` swaps an existing file atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    target = out.with_name(".%s.tmp" % out.name) if replace else out
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if replace:
            os.replace(target, out)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
