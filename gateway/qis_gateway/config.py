"""Gateway configuration: a TOML file (stdlib `tomllib`) checked against a table of known settings.

How it works: `SETTINGS` lists every setting as (section, key, type, default, help); that one table is
the source of defaults, validation and documentation (`python -m qis_gateway.config` prints it as TOML,
which is how deploy/gateway.example.toml and the table in docs/gateway.md were made). `load_config` reads
the file, refuses unknown sections/keys and values of the wrong type or out of range with a ConfigError
naming the key ("mqtt.port: must be an integer in 1..65535, got 'x'"), then applies environment
overrides for secrets (QIS_MQTT_PASSWORD, QIS_MQTT_USERNAME). Relative paths are resolved against
`gateway.data_dir`, which is resolved against the config file's directory.

Consumers never read settings by name: `GatewayConfig` holds one typed, frozen dataclass per section
(`config.synthesis.min_n`, `config.swarm.listen` as a (host, port) pair, `config.gateway.trusted_keys`
as bytes). A field's name is its key; where a dataclass field has a default (so tests can build one
section alone), that default is read from `SETTINGS`, so each default is written once.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
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
    S("mqtt", "max_queued", "int", 1000, "incoming messages waiting for the event loop; QoS 0 beyond is dropped"
      " and counted, QoS 1 is kept (and announced as the MQTT 5 Receive Maximum)", 10, 1000000),
    S("mqtt", "max_queued_bytes", "int", 4 * 1024 * 1024, "bytes of incoming messages waiting, same rule",
      65536, 1 << 30),
    S("swarm", "backend", "choice:kademlia|opendht", "kademlia",
      "swarm engine: our Kademlia, or OpenDHT (pip install 'opendht>=3.0')"),
    S("swarm", "listen", "hostport", "0.0.0.0:4000", "UDP HOST:PORT of this swarm node (port 0 = any)"),
    S("swarm", "bootstrap", "list", [], "HOST:PORT of known swarm nodes"),
    S("swarm", "rate_limit_per_s", "float", 0.0, "per-IP request rate limit; 0 = swarm default", 0, 1e9),
    S("swarm", "opendht_network", "int", 0x51495331, "OpenDHT network id (backend = opendht); keeps the swarm "
      "off other OpenDHT networks", 0, 4294967295),
    S("swarm", "lookup_limit", "int", 256, "packets fetched per address; at least what one holder keeps per "
      "address (256), so the newest are among them", 1, 10000),
    S("swarm", "lookup_cache_s", "float", 1.0, "seconds a looked-up address's packets answer further readings "
      "(this gateway's own puts and what its swarm node keeps refresh it at once); 0 = a lookup per reading", 0, 60),
    S("synthesis", "min_n", "int", 5, "effective packets an address needs (else enough = false, and the next "
      "coarser level is tried)", 1, 100000),
    S("synthesis", "half_life_s", "float", 30 * 86400.0, "recency half-life of a packet's weight", 1, 1e10),
    S("synthesis", "max_signer_share", "float", 0.5, "largest share of an address's selected packets one "
      "origin gateway may hold beyond min_per_signer; 1 = no share cap", 0.01, 1),
    S("synthesis", "min_per_signer", "int", 50, "packets (its newest) every origin gateway may contribute per "
      "address whatever its share", 1, 100000),
    S("synthesis", "max_packets", "int", 200, "packets synthesised per address at most: each signer's newest, "
      "shared out evenly", 1, 100000),
    S("synthesis", "top", "int", 3, "outcomes listed in a summary", 1, 10),
    S("synthesis", "level_policy", "choice:first|max", "first", "first = the finest level with min_n packets "
      "answers; max = every level with min_n packets, each outcome at its largest share (docs/usefulness.md)"),
    S("outbox", "flush_rate_per_s", "float", 5000.0, "outcome packets put per second at most", 0.1, 10000),
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
# Settings that were renamed: a file still using the old name gets an error naming the new one.
RENAMED = {("synthesis", "max_per_signer"): "synthesis.min_per_signer (with synthesis.max_signer_share: "
           "the per-signer cap is a share of the selection now, with this many packets always allowed)"}

HostPort = tuple[str, int]


def default(section: str, key: str) -> Any:
    """The default of one setting, from `SETTINGS` (the only place defaults are written)."""
    for s in SETTINGS:
        if s.section == section and s.key == key:
            return s.default
    raise KeyError("%s.%s is not a setting" % (section, key))


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    data_dir: Path
    registry: Path  # resolved against data_dir
    state_db: Path
    key_file: Path
    schemas: tuple[str, ...]
    trusted_keys: frozenset[bytes] | None  # None: any valid signer (open swarm)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = default("mqtt", "host")
    port: int = default("mqtt", "port")
    protocol: str = default("mqtt", "protocol")
    client_id: str = default("mqtt", "client_id")
    username: str = default("mqtt", "username")
    password: str = default("mqtt", "password")
    tls: bool = default("mqtt", "tls")
    keepalive_s: int = default("mqtt", "keepalive_s")
    session_expiry_s: int = default("mqtt", "session_expiry_s")
    reconnect_min_s: float = default("mqtt", "reconnect_min_s")
    reconnect_max_s: float = default("mqtt", "reconnect_max_s")
    max_queued: int = default("mqtt", "max_queued")
    max_queued_bytes: int = default("mqtt", "max_queued_bytes")


@dataclass(frozen=True, slots=True)
class SwarmSettings:
    backend: str
    listen: HostPort
    bootstrap: tuple[HostPort, ...]
    rate_limit_per_s: float
    opendht_network: int
    lookup_limit: int
    lookup_cache_s: float = default("swarm", "lookup_cache_s")


@dataclass(frozen=True, slots=True)
class SynthesisSettings:
    min_n: int = default("synthesis", "min_n")
    half_life_s: float = default("synthesis", "half_life_s")
    max_signer_share: float = default("synthesis", "max_signer_share")
    min_per_signer: int = default("synthesis", "min_per_signer")
    max_packets: int = default("synthesis", "max_packets")
    top: int = default("synthesis", "top")
    level_policy: str = default("synthesis", "level_policy")


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    flush_rate_per_s: float = default("outbox", "flush_rate_per_s")
    retry_min_s: float = default("outbox", "retry_min_s")
    retry_max_s: float = default("outbox", "retry_max_s")
    reading_ttl_s: float = default("outbox", "reading_ttl_s")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: HostPort | None  # None: the HTTP endpoint is off


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = default("log", "level")
    json: bool = default("log", "json")
    reject_interval_s: float = default("log", "reject_interval_s")


@dataclass(frozen=True, slots=True)
class HomeAssistantSettings:
    enabled: bool = default("homeassistant", "enabled")
    prefix: str = default("homeassistant", "prefix")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Validated settings, one typed section per TOML table; `source` is the file read (None: defaults)."""

    gateway: GatewaySettings
    mqtt: MqttSettings
    swarm: SwarmSettings
    synthesis: SynthesisSettings
    outbox: OutboxSettings
    metrics: MetricsSettings
    log: LogSettings
    homeassistant: HomeAssistantSettings
    source: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.gateway.data_dir

    @property
    def registry_path(self) -> Path:
        return self.gateway.registry

    @property
    def state_path(self) -> Path:
        return self.gateway.state_db

    @property
    def key_path(self) -> Path:
        return self.gateway.key_file


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


def _resolve(data_dir: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else data_dir / p


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
                if (section, key) in RENAMED:
                    raise ConfigError("%s.%s: renamed to %s" % (section, key, RENAMED[(section, key)]))
                names = ", ".join(k for (s, k) in known if s == section)
                raise ConfigError("%s.%s: unknown setting (known in [%s]: %s)" % (section, key, section, names))
            values[(section, key)] = _check(setting, value)
    env = os.environ if environ is None else environ
    for var, skey in ENV_OVERRIDES.items():
        if env.get(var):
            values[skey] = env[var]
    bootstrap = tuple(parse_hostport(item, "swarm.bootstrap[%d]" % i)
                      for i, item in enumerate(values[("swarm", "bootstrap")]))
    trusted = []
    for i, item in enumerate(values[("gateway", "trusted_keys")]):
        try:
            key = bytes.fromhex(item)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError("gateway.trusted_keys[%d]: must be 64 hex characters (an Ed25519 key)" % i)
        trusted.append(key)
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

    def section(cls: type, name: str, **converted: Any) -> Any:
        plain = {f: values[(name, f)] for f in cls.__dataclass_fields__ if f not in converted}
        return cls(**plain, **converted)

    metrics_listen = values[("metrics", "listen")]
    return GatewayConfig(
        gateway=GatewaySettings(
            data_dir=data_dir, registry=_resolve(data_dir, values[("gateway", "registry")]),
            state_db=_resolve(data_dir, values[("gateway", "state_db")]),
            key_file=_resolve(data_dir, values[("gateway", "key_file")]),
            schemas=tuple(values[("gateway", "schemas")]), trusted_keys=frozenset(trusted) or None),
        mqtt=section(MqttSettings, "mqtt"),
        swarm=section(SwarmSettings, "swarm", listen=parse_hostport(values[("swarm", "listen")], "swarm.listen"),
                      bootstrap=bootstrap),
        synthesis=section(SynthesisSettings, "synthesis"),
        outbox=section(OutboxSettings, "outbox"),
        metrics=MetricsSettings(parse_hostport(metrics_listen, "metrics.listen") if metrics_listen else None),
        log=section(LogSettings, "log"),
        homeassistant=section(HomeAssistantSettings, "homeassistant"),
        source=source)


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
