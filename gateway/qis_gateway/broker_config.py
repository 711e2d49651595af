"""`qis-gateway broker-config`: a Mosquitto config, password file and ACL for the registered boards.

How it works:
- Every active board gets MQTT user = its device id and a password derived from its registry secret
  (`board_password`: HMAC-SHA256(secret, "qis-mqtt-password"), 32 hex characters), so `device add`
  can put the password into the board's device.json before this command ever runs, and re-running it
  never changes a board's password.
- Re-running is idempotent: the gateway's password is read back from its env file (`--gateway-env`,
  default OUT/gateway.env) and kept; `--rotate` (or `--gateway-password`) replaces it, and the password
  file and the env file are then written together, so broker and gateway always agree. The Home
  Assistant login (`--ha-user`) is kept the same way (OUT/homeassistant.env). Password-file lines and
  ACL entries that someone else added (users this command never wrote; ACL lines below the marker) are
  carried over unchanged; the users it manages are remembered in OUT/managed-users.
- Password file: Mosquitto 2's PBKDF2-SHA512 format `user:$7$<iterations>$<b64 salt>$<b64 hash>`
  (12-byte salt, 101 iterations like mosquitto_passwd), computed here with hashlib; when
  `mosquitto_passwd` is installed the plaintext lines are converted with `mosquitto_passwd -U` instead
  (no password on a command line). Both forms are tested against a real Mosquitto.
- ACL: a board may publish only qis/v1/<site>/<device>/{fp,outcome,status} and read only its own
  {summary,error,status}; the gateway may read and write qis/#, qis-ha/# and homeassistant/#; Home
  Assistant reads qis-ha/# and uses homeassistant/#. Revoked boards get no line: they cannot log in.
- mosquitto.conf (`--drop-in`, default OUT/mosquitto.conf) is written to load beside a distribution's
  main config (Debian's sets pid_file, persistence, persistence_location, log_dest and include_dir, and
  Mosquitto refuses a repeated persistence_location), so it sets no persistence location unless
  `--persistence-dir` asks for a standalone broker. No anonymous access; a 2 s autosave (a SIGKILLed
  broker loses at most that); `max_queued_messages 0` (no limit) because stock Mosquitto silently
  drops QoS 1 messages for a subscriber more than 1,000 behind -- measured in
  tests/gateway/test_gw_broker_config.py; abandoned persistent sessions expire after 14 days.
- Run as root with a `mosquitto` group present (Debian), the broker's files are root:mosquitto 0640 so
  the broker can read them after dropping privileges; env files are 0600.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from qis_gateway.registry import DeviceRecord, Registry, board_password

log = logging.getLogger(__name__)

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
ACL_MARKER = "# ---- entries below this line are yours: broker-config keeps them ----"
MANAGED_FILE = "managed-users"
HA_ENV = "homeassistant.env"


class BrokerConfigError(ValueError):
    """A broker-config request that cannot be carried out; the message says why."""


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2.x password hash: $7$iterations$base64(salt)$base64(PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def _write(path: Path, text: str, mode: int = 0o600, group: int | None = None) -> None:
    """Write `text` to a new file beside `path` with its final mode and group, then rename it over `path`
    (a broker reloading meanwhile sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.tmp" % path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if group is not None:
            os.chown(tmp, 0, group)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd EnvironmentFile syntax, no quoting) -> dict; {} if the file is absent."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _passwd_lines(path: Path) -> dict[str, str]:
    """user -> whole line of an existing password file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return {line.split(":", 1)[0]: line for line in text.splitlines() if ":" in line and not line.startswith("#")}


def write_password_file(path: Path, users: dict[str, str], use_tool: bool = True, keep: list[str] | None = None,
                        mode: int = 0o600, group: int | None = None) -> str:
    """Write hashed credentials (plus `keep`, already-hashed lines carried over); returns
    "mosquitto_passwd" or "hashlib" (which wrote the hashes)."""
    for user in users:
        if ":" in user or not user:
            raise ValueError("MQTT user name %r must be non-empty and contain no ':'" % user)
    tail = "".join(line + "\n" for line in keep or [])
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    if tool:
        plain = path.with_name(".%s.plain" % path.name)
        _write(plain, "".join("%s:%s\n" % (u, p) for u, p in users.items()))
        try:
            subprocess.run([tool, "-U", str(plain)], check=True, capture_output=True, timeout=60)
            _write(path, plain.read_text() + tail, mode, group)
            return "mosquitto_passwd"
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("mosquitto_passwd -U failed (%s); hashing in Python instead", exc)
        finally:
            plain.unlink(missing_ok=True)
    _write(path, "".join("%s:%s\n" % (u, hash_password(p)) for u, p in users.items()) + tail, mode, group)
    return "hashlib"


def acl_text(records: list[DeviceRecord], gateway_user: str, ha_user: str | None = None, kept: str = "") -> str:
    lines = ["# generated by qis-gateway broker-config: boards publish only their own topics and read only",
             "# their own answers; the gateway reads and writes everything qis-related.", "",
             "user %s" % gateway_user, "topic readwrite qis/#", "topic readwrite qis-ha/#",
             "topic readwrite homeassistant/#"]
    if ha_user:
        lines += ["", "user %s" % ha_user, "topic read qis-ha/#", "topic readwrite homeassistant/#"]
    for r in records:
        if r.revoked:
            continue
        base = "qis/v1/%s/%s" % (r.site, r.device_id)
        lines += ["", "user %s" % r.device_id, "topic write %s/fp" % base, "topic write %s/outcome" % base,
                  "topic readwrite %s/status" % base, "topic read %s/summary" % base, "topic read %s/error" % base]
    return "\n".join(lines) + "\n\n" + ACL_MARKER + "\n" + kept


def mosquitto_conf(host: str, port: int, password_file: Path, acl_file: Path, persistence_dir: Path | None,
                   autosave_s: int = 2, run_as: str | None = None) -> str:
    if persistence_dir is None:
        persistence = ["# persistence: the distribution's main config turns it on and sets its location",
                       "# (Debian: persistence true, persistence_location /var/lib/mosquitto/); repeating",
                       "# persistence_location here would stop Mosquitto from starting"]
    else:
        persistence = ["# persistence: sessions and queued QoS 1 messages survive a restart",
                       "persistence true", "persistence_location %s/" % str(persistence_dir).rstrip("/")]
    return "\n".join([
        "# generated by qis-gateway broker-config (see docs/gateway.md)",
        *(["# started as root, Mosquitto switches to this account (it must read passwd and acl)",
           "user %s" % run_as] if run_as else []),
        "per_listener_settings false",
        "listener %d %s" % (port, host),
        "allow_anonymous false",
        "password_file %s" % password_file,
        "acl_file %s" % acl_file,
        *persistence,
        "# a crash loses at most this many seconds of broker state",
        "autosave_interval %d" % autosave_s,
        "# stock Mosquitto drops QoS 1 messages for a subscriber >1000 behind; 0 = never drop",
        "max_queued_messages 0",
        "max_inflight_messages 20",
        "# small frames go out at once: with Nagle a board waits ~40 ms (a delayed ACK) for every summary",
        "set_tcp_nodelay true",
        "persistent_client_expiration 14d",
        "connection_messages true",
        "",
    ])


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    conf: Path
    passwd: Path
    acl: Path
    gateway_env: Path
    hashed_by: str
    gateway_password_changed: bool = False
    gateway_password_new: bool = False
    ha_env: Path | None = None
    kept_users: tuple[str, ...] = ()


def _broker_group(name: str | None) -> int | None:
    """The gid the broker's files get: only when root (chown needs it) and the group exists."""
    if os.geteuid() != 0 or not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def generate(out_dir: Path, records: list[DeviceRecord], *, listen: tuple[str, int] = ("0.0.0.0", 1883),
             gateway_user: str = "qis-gateway", gateway_password: str | None = None,
             persistence_dir: Path | None = None, use_tool: bool = True, run_as: str | None = None,
             drop_in: bool = False, conf_path: Path | None = None, gateway_env: Path | None = None,
             rotate: bool = False, ha_user: str | None = None, broker_group: str | None = "mosquitto") -> BrokerFiles:
    """Write (or rewrite) the broker's files. A standalone config (default for library callers) keeps its
    persistence file in `persistence_dir` or `out_dir`; `drop_in=True` leaves persistence to the main config."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = {r.device_id for r in records}
    for user in (gateway_user, ha_user):
        if user and user in ids:
            raise BrokerConfigError("the MQTT user %r clashes with a device id" % user)
    gid = _broker_group(broker_group)
    if gid is not None:
        os.chown(out_dir, 0, gid)
        os.chmod(out_dir, 0o750)
    passwd, acl = out_dir / "passwd", out_dir / "acl"
    conf = Path(conf_path).resolve() if conf_path else out_dir / "mosquitto.conf"
    env = Path(gateway_env).resolve() if gateway_env else out_dir / "gateway.env"
    old_env = read_env(env)
    old_password = old_env.get("QIS_MQTT_PASSWORD") if old_env.get("QIS_MQTT_USERNAME") == gateway_user else None
    password = gateway_password or (None if rotate else old_password) or secrets.token_hex(16)
    changed = password != old_password
    users = {gateway_user: password}
    ha_env = None
    if ha_user:
        ha_env = out_dir / HA_ENV
        old_ha = read_env(ha_env)
        ha_password = (old_ha.get("MQTT_PASSWORD") if old_ha.get("MQTT_USERNAME") == ha_user else None)
        ha_password = ha_password or secrets.token_hex(16)
        users[ha_user] = ha_password
    users.update({r.device_id: board_password(r.secret) for r in records if not r.revoked})
    # What this command wrote before (and may write now) is ours to drop; any other line is someone's own.
    managed_file = out_dir / MANAGED_FILE
    try:
        managed_before = set(managed_file.read_text().split())
    except FileNotFoundError:
        managed_before = set()
    ours = managed_before | ids | set(users)
    kept = [line for user, line in _passwd_lines(passwd).items() if user not in ours]
    hashed_by = write_password_file(passwd, users, use_tool, keep=kept, mode=0o640 if gid is not None else 0o600,
                                    group=gid)
    try:
        acl_old = acl.read_text()
        acl_kept = acl_old.split(ACL_MARKER + "\n", 1)[1] if ACL_MARKER in acl_old else ""
    except FileNotFoundError:
        acl_kept = ""
    mode = 0o640 if gid is not None else 0o644
    _write(acl, acl_text(records, gateway_user, ha_user, acl_kept), mode, gid)
    persistence = None if drop_in else (Path(persistence_dir).resolve() if persistence_dir else out_dir)
    _write(conf, mosquitto_conf(listen[0], listen[1], passwd, acl, persistence, run_as=run_as), mode, gid)
    _write(managed_file, "\n".join(sorted(set(users))) + "\n")
    _write(env, "QIS_MQTT_USERNAME=%s\nQIS_MQTT_PASSWORD=%s\n" % (gateway_user, password))
    if ha_user and ha_env is not None:
        _write(ha_env, "MQTT_USERNAME=%s\nMQTT_PASSWORD=%s\n" % (ha_user, users[ha_user]))
    return BrokerFiles(conf, passwd, acl, env, hashed_by, changed and old_password is not None, old_password is None,
                       ha_env,
                       tuple(line.split(":", 1)[0] for line in kept))


def read_records(path: Path) -> list[DeviceRecord]:
    """Every board in the registry at `path` ([] if there is none yet). Run as root (broker-config writes
    /etc/mosquitto), the registry is read as the account that owns it, so no root-owned -wal/-shm file is
    left behind for the service to trip over."""
    if not path.exists():
        return []
    owner = path.stat()
    switch = os.geteuid() == 0 and owner.st_uid != 0
    if switch:
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)
    try:
        with Registry(path, create=False) as registry:
            return registry.list()
    finally:
        if switch:
            os.seteuid(0)
            os.setegid(0)
