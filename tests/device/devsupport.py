"""Helpers for the board tests: a CPython test responder in place of the gateway, and board runners.

`Responder` (paho-mqtt) subscribes to every board topic, verifies each frame with qis.messages exactly
as the gateway does, records them, and answers each new fp with a retained QoS-1 summary whose `re` is
the fp's seq. `answer` can be replaced to send malformed or wrongly tagged summaries.
`board_config()` writes a device.json (+ schema) into a directory; `run_board()` runs the board code
(compiled .mpy by default) through qis_firmware.emulate under the MicroPython unix port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
from qis import messages
from qis.errors import FrameError
from qis.topics import parse_topic, subscription, topic
from qis_firmware import emulate
from qis_gateway.harness.broker import Broker, free_port, mosquitto_path

SECRET_HEX = "11" * 32
SECRET = bytes.fromhex(SECRET_HEX)
SCHEMA_SRC = emulate.SCHEMA_DIR / "machine_health.json"


def board_config(dir_: Path, port: int, **extra: Any) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA_SRC, dir_ / "machine_health.json")
    cfg: dict[str, Any] = {
        "site": "site-a", "device": "pump-01", "secret": SECRET_HEX,
        "broker": {"host": "127.0.0.1", "port": port, "keepalive_s": 30},
        "schema": "machine_health.json", "fixed": {"machine_class": "pump"},
        "sensor": {"driver": "sim", "seed": 1}, "interval_s": 0, "summary_timeout_s": 2,
        "queue_max": 200, "state_dir": "state", "mqtt_timeout_s": 2,
        "reconnect_min_ms": 100, "reconnect_max_ms": 1000, "watchdog_ms": 0,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = dir_ / "device.json"
    path.write_text(json.dumps(cfg))
    return path


def code_dir(tmp_root: Path) -> Path:
    return emulate.build_mpy(tmp_root / "mpy")


def spawn_board(config: Path, code: Path, readings: int | None, heap: str = "64K") -> subprocess.Popen[str]:
    return emulate.spawn(config, heap, readings, code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def spawn_script(script: str, code: Path, heap: str = "96K", cwd: Path | None = None) -> subprocess.Popen[str]:
    """Run a board script (e.g. qis_device.main with an on_summary callback) in the background."""
    return subprocess.Popen([emulate.micropython_executable(), "-X", "heapsize=%s" % heap, "-c", script],
                            env=emulate.micropython_env([code]), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_board(config: Path, code: Path, readings: int | None, heap: str = "64K", timeout_s: float = 60) -> str:
    proc = spawn_board(config, code, readings, heap)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("board timed out\n%s\n%s" % (out, err)) from None
    if proc.returncode != 0:
        raise AssertionError("board exited %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (proc.returncode, out, err))
    return out


def stats(output: str) -> dict[str, int]:
    for line in output.splitlines():
        if line.startswith("QIS-STATS "):
            return {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}
    raise AssertionError("no QIS-STATS line in board output:\n%s" % output)


class TlsBroker(Broker):
    """Mosquitto with a second listener speaking TLS (`tls_port`, the given key and certificate) beside
    the plain one (`port`, for the responder). Without a certificate it is a plain broker."""

    def __init__(self, workdir: Path, cert: tuple[Path, Path] | None) -> None:
        super().__init__(workdir, kind="mosquitto", port=free_port(), persistence=False)
        self.cert = cert
        self.tls_port = free_port() if cert else None

    def _command(self) -> list[str]:
        cmd = super()._command()
        if self.cert:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(conf.read_text() + "listener %d %s\nkeyfile %s\ncertfile %s\n" % (
                self.tls_port, self.host, self.cert[0], self.cert[1]))
        return cmd

    def start(self) -> TlsBroker:
        super().start()
        if self.tls_port:
            from qis_gateway.harness.broker import wait_listening

            wait_listening(self.host, self.tls_port)
        return self

    @classmethod
    def start_in(cls, workdir: Path, cert: tuple[Path, Path] | None) -> TlsBroker:
        if mosquitto_path() is None:
            raise RuntimeError("needs Mosquitto (Debian package mosquitto)")
        return cls(workdir, cert).start()


def make_cert(dir_: Path, kind: str = "ec") -> tuple[Path, Path]:
    """(key, certificate) of a self-signed server certificate for 127.0.0.1: RSA-2048 or EC P-256."""
    key, cert = dir_ / "key.pem", dir_ / "cert.pem"
    dir_.mkdir(parents=True, exist_ok=True)
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


class Responder:
    """Plays the gateway: verify board frames, answer fps with retained summaries."""

    def __init__(self, host: str, port: int, secret: bytes = SECRET, site: str = "site-a",
                 clean_session: bool = True) -> None:
        self.secret = secret
        self.site = site
        self.lock = threading.Lock()
        self.frames: list[dict[str, Any]] = []  # every verified frame in arrival order (duplicates too)
        self.bad: list[str] = []
        self.answer: Callable[[str, dict[str, Any]], None] = self.answer_ok
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-responder",
                                  clean_session=clean_session)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("responder did not connect")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        for kind in ("fp", "outcome", "status"):
            client.subscribe(subscription(kind, self.site), qos=1)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            _site, device, kind = parse_topic(msg.topic)
            body = messages.decode(msg.payload, self.secret, kind, device)
        except (FrameError, ValueError) as exc:
            with self.lock:
                self.bad.append(str(exc))
            return
        body["_retained"] = bool(msg.retain)
        with self.lock:
            self.frames.append(body)
        if kind == "fp":
            self.answer(device, body)

    def summary_payload(self, device: str, seq: int, secret: bytes | None = None) -> bytes:
        return messages.encode_summary(device, seq, secret or self.secret, SimpleNamespace(
            enough=True, n=12, top=(("ok", 750), ("inspect", 250)), conf=800, mean=1.5, level=0, hops=3, ms=7))

    def publish_summary(self, device: str, payload: bytes) -> None:
        self.client.publish(topic(self.site, device, "summary"), payload, qos=1, retain=True)

    def publish_summary_raw(self, device: str, payload: bytes) -> None:
        """Not retained: for bad frames that must not replace the retained good summary."""
        self.client.publish(topic(self.site, device, "summary"), payload, qos=1)

    def answer_ok(self, device: str, body: dict[str, Any]) -> None:
        self.publish_summary(device, self.summary_payload(device, body["seq"]))

    def answer_none(self, device: str, body: dict[str, Any]) -> None:
        pass

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [f for f in self.frames if f["kind"] == kind]

    def seqs(self, kind: str = "fp") -> list[int]:
        return [f["seq"] for f in self.of_kind(kind)]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 20) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def first_arrivals(seqs: list[int]) -> list[int]:
    """Seqs in order of first arrival (QoS-1 duplicates removed, as the gateway does)."""
    return list(dict.fromkeys(seqs))  # dicts keep insertion order: first arrivals, duplicates dropped
