"""Gateway configuration: a TOML file (stdlib `tomllib`) checked against a table of known settings.

How it works: `SETTINGS` lists every setting as (section, key, type, default, help); that one table is
the source of defaults, validation and documentation (`python -m qis_gateway.config` prints it as TOML,
which is how deploy/gateway.example.toml and the table in docs/gateway.md were made). `load_config` reads
the file, refuses unknown sections/keys and values of the wrong type or out of range with a ConfigError
naming the key ("mqtt.port: must be an integer in 1..65535, got 'x'"), then applies environment
overrides for secrets (QIS_MQTT_PASSWORD, QIS_MQTT_USERNAME). Relative paths are resolved against
`gateway.data_dir`, which is resolved against the config file's directory.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qis.errors import TopicError
from qis.topics import check_id


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and what is wrong."""


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    kind: str  # "str" | "int" | "float" | "bool" | "list" | "hostport" | "path" | "choice:a|b"
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("gateway", "data_dir", "path", "/var/lib/qis-gateway", "directory for the registry, state DB, keys"),
    S("gateway", "registry", "path", "registry.sqlite", "device registry (SQLite), relative to data_dir"),
    S("gateway", "state_db", "path", "state.sqlite", "readings, outbox and seen frames (SQLite)"),
    S("gateway", "key_file", "path", "gateway.key", "Ed25519 signing key (made on first run if absent)"),
    S("gateway", "schemas", "list", [], "extra schema JSON files (the packaged schemas are always loaded)"),
    S("gateway", "trusted_keys", "list", [], "hex Ed25519 keys of trusted gateways; empty = any valid signer"),
    S("mqtt", "host", "str", "127.0.0.1", "broker host"),
    S("mqtt", "port", "int", 1883, "broker port", 1, 65535),
    S("mqtt", "protocol", "choice:3.1.1|5", "3.1.1", "MQTT protocol version"),
    S("mqtt", "client_id", "str", "qis-gateway", "fixed client id: the broker keeps this session's queue"),
    S("mqtt", "username", "str", "", "user name (env QIS_MQTT_USERNAME overrides)"),
    S("mqtt", "password", "str", "", "password (env QIS_MQTT_PASSWORD overrides; prefer the env)"),
    S("mqtt", "tls", "bool", False, "connect with TLS (system CA store)"),
    S("mqtt", "keepalive_s", "int", 30, "MQTT keepalive", 5, 3600),
    S("mqtt", "session_expiry_s", "int", 604800, "MQTT 5 session expiry (3.1.1 sessions never expire)",
      60, 4294967295),
    S("mqtt", "reconnect_min_s", "float", 0.5, "first reconnect delay", 0.01, 60),
    S("mqtt", "reconnect_max_s", "float", 30.0, "reconnect delay cap (reconnects forever)", 0.1, 3600),
    S("swarm", "backend", "choice:kademlia|opendht", "kademlia",
      "swarm engine: our Kademlia, or OpenDHT (pip install 'qis-edge[opendht]')"),
    S("swarm", "listen", "hostport", "0.0.0.0:4000", "UDP HOST:PORT of this swarm node (port 0 = any)"),
    S("swarm", "bootstrap", "list", [], "HOST:PORT of known swarm nodes"),
    S("swarm", "rate_limit_per_s", "float", 0.0, "per-IP request rate limit; 0 = swarm default", 0, 1e9),
    S("swarm", "opendht_network", "int", 0x51495331, "OpenDHT network id (backend = opendht); keeps the swarm "
      "off other OpenDHT networks", 0, 4294967295),
    S("swarm", "lookup_limit", "int", 200, "packets fetched per address", 1, 10000),
    S("synthesis", "min_n", "int", 5, "packets an address needs before coarser levels are skipped", 1, 100000),
    S("synthesis", "half_life_s", "float", 30 * 86400.0, "recency half-life of a packet's weight", 1, 1e10),
    S("synthesis", "max_per_signer", "int", 50, "packets one origin gateway may contribute per lookup",
      1, 100000),
    S("synthesis", "top", "int", 3, "outcomes listed in a summary", 1, 10),
    S("synthesis", "level_policy", "choice:first|max", "first", "first = the finest level with min_n packets "
      "answers; max = every level with min_n packets, each outcome at its largest share (docs/usefulness.md)"),
    S("outbox", "flush_rate_per_s", "float", 20.0, "outcome packets put per second at most", 0.1, 10000),
    S("outbox", "retry_min_s", "float", 1.0, "first retry delay of an unstored packet", 0.01, 3600),
    S("outbox", "retry_max_s", "float", 300.0, "retry delay cap (retried forever)", 0.1, 86400),
    S("outbox", "reading_ttl_s", "float", 7 * 86400.0, "how long readings are kept for outcomes", 60, 1e9),
    S("metrics", "listen", "hostport", "127.0.0.1:9108", "HTTP /metrics, /health, /status; empty = off"),
    S("log", "level", "choice:DEBUG|INFO|WARNING|ERROR", "INFO", "log level"),
    S("log", "json", "bool", False, "one JSON object per log line (for journald/loki)"),
    S("log", "reject_interval_s", "float", 60.0, "log each device's rejections at most once per interval",
      0, 86400),
    S("homeassistant", "enabled", "bool", False, "publish Home Assistant MQTT discovery for each board"),
    S("homeassistant", "prefix", "str", "homeassistant", "discovery prefix"),
)
del S

ENV_OVERRIDES = {"QIS_MQTT_PASSWORD": ("mqtt", "password"), "QIS_MQTT_USERNAME": ("mqtt", "username")}


@dataclass(frozen=True)
class GatewayConfig:
    """Validated settings: `values[(section, key)]`, plus resolved paths and conveniences."""

    values: dict[tuple[str, str], Any]
    source: Path | None = None
    data_dir: Path = field(default=Path("."))

    def get(self, section: str, key: str) -> Any:
        return self.values[(section, key)]

    def path(self, section: str, key: str) -> Path:
        p = Path(self.values[(section, key)])
        return p if p.is_absolute() else self.data_dir / p

    @property
    def registry_path(self) -> Path:
        return self.path("gateway", "registry")

    @property
    def state_path(self) -> Path:
        return self.path("gateway", "state_db")

    @property
    def key_path(self) -> Path:
        return self.path("gateway", "key_file")


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("%s: must be HOST:PORT with a port in 0..65535, got %r" % (where, text))
    return host.strip("[]"), int(port)


def _check(setting: Setting, value: Any) -> Any:
    where = "%s.%s" % (setting.section, setting.key)
    kind = setting.kind
    if kind in ("str", "path") or kind.startswith("choice:"):
        if not isinstance(value, str):
            raise ConfigError("%s: must be a string, got %r" % (where, value))
        if kind.startswith("choice:"):
            choices = kind[7:].split("|")
            if value not in choices:
                raise ConfigError("%s: must be one of %s, got %r" % (where, ", ".join(choices), value))
        return value
    if kind == "hostport":
        if not isinstance(value, str):
            raise ConfigError("%s: must be a \"HOST:PORT\" string, got %r" % (where, value))
        if value:
            parse_hostport(value, where)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError("%s: must be true or false, got %r" % (where, value))
        return value
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError("%s: must be a list of strings, got %r" % (where, value))
        return list(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("%s: must be an integer, got %r" % (where, value))
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError("%s: must be a number, got %r" % (where, value))
        value = float(value)
    if (setting.lo is not None and value < setting.lo) or (setting.hi is not None and value > setting.hi):
        raise ConfigError("%s: must be in %g..%g, got %r" % (where, setting.lo, setting.hi, value))
    return value


def build_config(data: dict[str, Any], source: Path | None = None,
                 environ: dict[str, str] | None = None) -> GatewayConfig:
    """Validate a parsed TOML dict (see module docstring)."""
    known: dict[tuple[str, str], Setting] = {(s.section, s.key): s for s in SETTINGS}
    sections = {s.section for s in SETTINGS}
    values = {(s.section, s.key): s.default for s in SETTINGS}
    for section, table in data.items():
        if section not in sections:
            raise ConfigError("[%s]: unknown section (known: %s)" % (section, ", ".join(sorted(sections))))
        if not isinstance(table, dict):
            raise ConfigError("%s: must be a table ([%s])" % (section, section))
        for key, value in table.items():
            setting = known.get((section, key))
            if setting is None:
                names = ", ".join(k for (s, k) in known if s == section)
                raise ConfigError("%s.%s: unknown setting (known in [%s]: %s)" % (section, key, section, names))
            values[(section, key)] = _check(setting, value)
    env = os.environ if environ is None else environ
    for var, skey in ENV_OVERRIDES.items():
        if env.get(var):
            values[skey] = env[var]
    for i, item in enumerate(values[("swarm", "bootstrap")]):
        parse_hostport(item, "swarm.bootstrap[%d]" % i)
    for i, item in enumerate(values[("gateway", "trusted_keys")]):
        try:
            ok = len(bytes.fromhex(item)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError("gateway.trusted_keys[%d]: must be 64 hex characters (an Ed25519 key)" % i)
    try:
        check_id(values[("mqtt", "client_id")].replace("/", "?"), "client id")
    except TopicError as exc:
        raise ConfigError("mqtt.client_id: %s" % exc) from exc
    if values[("mqtt", "reconnect_max_s")] < values[("mqtt", "reconnect_min_s")]:
        raise ConfigError("mqtt.reconnect_max_s: must be >= mqtt.reconnect_min_s")
    base = source.parent if source else Path.cwd()
    data_dir = Path(values[("gateway", "data_dir")])
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    return GatewayConfig(values=values, source=source, data_dir=data_dir)


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate a TOML file (None = all defaults). ConfigError on any problem."""
    if path is None:
        return build_config({}, None, environ)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("%s: cannot read the config file: %s" % (path, exc.strerror or exc)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: not UTF-8 text" % path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s: invalid TOML: %s" % (path, exc)) from exc
    return build_config(data, Path(path).resolve(), environ)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, list):
        return "[%s]" % ", ".join(_toml_value(v) for v in value)
    return repr(value)


def example_toml() -> str:
    """Every setting with its default and help, as a commented TOML file."""
    lines = ["# qis-gateway configuration. Every setting is shown with its default; delete what you keep.",
             "# Secrets: set QIS_MQTT_PASSWORD in the environment rather than here."]
    section = None
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            lines += ["", "[%s]" % section]
        lines.append("# %s" % s.help)
        lines.append("%s = %s" % (s.key, _toml_value(s.default)))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(example_toml())
