"""Host-side check of a board config (device.json) before it is deployed (docs/device.md, Board config).

How it works: the board validates its config fully at boot (qis_device.config); this check catches on
the host, before anything is copied, the mistakes that would leave a board looping on an error:
missing required keys (site, device, secret, broker.host, schema), a secret that is not 64 hex
characters, ids that the topic scheme refuses, and a schema file that cannot be found (looked up next
to the config first, then among the schemas shipped in the `qis` package).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from qis_firmware.errors import ConfigError

REQUIRED = ("site", "device", "secret", "broker.host", "schema")
SECRET_RE = re.compile(r"[0-9a-fA-F]{64}")


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def schema_dirs(config_path: Path) -> list[Path]:
    import qis

    return [config_path.parent, Path(qis.__file__).resolve().parent / "schemas"]


def load_config(path: Path) -> dict[str, Any]:
    """Read and check device.json; raise ConfigError naming every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("config file %s does not exist; create one with `qis-device provision` or "
                          "`qis-gateway device add`" % path) from exc
    except OSError as exc:
        raise ConfigError("cannot read config %s: %s" % (path, exc)) from exc
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError("config %s is not valid JSON: %s" % (path, exc)) from exc
    if not isinstance(config, dict):
        raise ConfigError("config %s must be a JSON object" % path)
    problems = ["missing %s" % key for key in REQUIRED if _get(config, key) in (None, "")]
    secret = config.get("secret")
    if secret not in (None, "") and (not isinstance(secret, str) or SECRET_RE.fullmatch(secret) is None):
        problems.append("secret must be 64 hex characters (a 32-byte HMAC key)")
    port = _get(config, "broker.port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        problems.append("broker.port must be an integer 1..65535")
    from qis.topics import check_id

    for key in ("site", "device"):
        value = config.get(key)
        if value not in (None, ""):
            try:
                check_id(value)
            except ValueError as exc:
                problems.append("%s: %s" % (key, exc))
    if problems:
        raise ConfigError("config %s: %s (see docs/flashing.md for the format)" % (path, "; ".join(problems)))
    return config


def find_schema(config: dict[str, Any], config_path: Path) -> Path:
    """The schema file named by the config, next to the config or shipped with qis."""
    name = config["schema"]
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError("config %s: schema must be a plain file name (it is stored next to the config on "
                          "the board), got %r" % (config_path, name))
    for folder in schema_dirs(config_path):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise ConfigError("schema %s named in %s was found neither next to the config nor in %s"
                      % (name, config_path, schema_dirs(config_path)[1]))
