"""Local brokers for tests, the HIL suite and the demo: a real Mosquitto on a free loopback port with a
config we write, or amqtt as fallback.

`start_broker(workdir)` returns a running `Broker` with `.host`, `.port`, `.stop()`, `.kill()` (SIGKILL,
no clean save), `.restart()` (same port, same persistence file), `.pause()`/`.resume()` (SIGSTOP/SIGCONT,
which looks like silent WiFi loss to clients). Mosquitto is preferred; when it is not installed the
embedded amqtt broker runs in a child process (MQTT 3.1.1 only, no reliable persistence: callers that need
restart persistence or ACLs ask for `require_mosquitto=True` and get BrokerUnavailable otherwise).

The config avoids stock Mosquitto's silent QoS-1 drops for slow subscribers (`max_queued_messages 0`
= unlimited) and autosaves every second so a SIGKILLed broker loses at most that much (docs/design.md, MQTT brokers).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


class BrokerUnavailable(RuntimeError):
    """Mosquitto is needed (persistence, ACLs) but not installed."""


# Ports handed out here come from below Linux's ephemeral range (32768-60999): a port found by binding
# port 0 is free now but may go to an outgoing connection or another listener before its user binds it
# (seen with 64 gateways and 64 brokers: "address already in use"). Ports below the range are only ever
# taken by explicit binds, and `_given` keeps this process from handing one out twice.
_PORT_RANGE = (20000, 32000)
_given: set[tuple[int, int]] = set()


def pick_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free for `kind` (SOCK_STREAM or SOCK_DGRAM) on `host` now, unlikely to be taken before use."""
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(*_PORT_RANGE)
        if (kind, port) in _given:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given.add((kind, port))
        return port
    raise RuntimeError("no free port in %d-%d" % _PORT_RANGE)


def free_port(host: str = "127.0.0.1") -> int:
    return pick_port(socket.SOCK_STREAM, host)


def mosquitto_path() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def wait_listening(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("broker did not listen on %s:%d within %.1f s" % (host, port, timeout_s))


MOSQUITTO_CONFIG = """\
# written by qis-edge (qis_gateway.harness.broker)
per_listener_settings false
{user}
listener {port} {host}
allow_anonymous {anonymous}
{auth}
persistence {persistence}
persistence_location {workdir}/
autosave_interval 1
max_queued_messages 0
set_tcp_nodelay true
max_inflight_messages 0
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


class Broker:
    """A broker process on 127.0.0.1. Use as a context manager or call stop()."""

    def __init__(self, workdir: Path, *, kind: str, port: int, host: str = "127.0.0.1",
                 persistence: bool = True, password_file: Path | None = None, acl_file: Path | None = None):
        self.workdir = Path(workdir)
        self.kind = kind
        self.host = host
        self.port = port
        self.persistence = persistence
        self.password_file = password_file
        self.acl_file = acl_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return "mqtt://%s:%d" % (self.host, self.port)

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            auth = []
            if self.password_file:
                auth.append("password_file %s" % self.password_file)
            if self.acl_file:
                auth.append("acl_file %s" % self.acl_file)
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(MOSQUITTO_CONFIG.format(
                port=self.port, host=self.host, workdir=self.workdir,
                anonymous="false" if self.password_file else "true",
                auth="\n".join(auth), persistence="true" if self.persistence else "false",
                # As root Mosquitto drops to user `mosquitto`, which cannot write our log and persistence
                # files in a root-owned temp dir: persistence would silently not happen.
                user="user root" if os.geteuid() == 0 else ""))
            return [mosquitto_path() or "mosquitto", "-c", str(conf)]
        return [sys.executable, "-m", "qis_gateway.harness.amqtt_broker", self.host, str(self.port)]

    def start(self) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        log = open(self.workdir / ("%s.out" % self.kind), "ab")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        try:
            wait_listening(self.host, self.port)
        except RuntimeError:
            self.kill()
            raise
        return self

    def _signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file on the way out."""
        if self.proc and self.proc.poll() is None:
            self._signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final save (the last autosave is what survives)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(workdir: Path, *, require_mosquitto: bool = False, persistence: bool = True,
                 password_file: Path | None = None, acl_file: Path | None = None) -> Broker:
    """Start Mosquitto (or amqtt when Mosquitto is absent and not required) on a free port."""
    kind = "mosquitto" if mosquitto_path() else "amqtt"
    if kind == "amqtt" and (require_mosquitto or password_file or acl_file):
        raise BrokerUnavailable("needs Mosquitto (persistence/ACLs); install the Debian package `mosquitto` "
                                "(make test does so when run as root)")
    broker = Broker(workdir, kind=kind, port=free_port(), persistence=persistence,
                    password_file=password_file, acl_file=acl_file)
    return broker.start()
