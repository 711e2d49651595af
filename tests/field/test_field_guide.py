"""The field test (issue 14): docs/raspberry-pi.md and docs/flashing.md, run from the documents themselves.

Every shell block a guide marks with `<!-- field-test -->` is run in document order with `bash -e`, in one
shell session (working directory and exported variables carry over from block to block), as a normal
login user created for the test (an administrator allowed to use sudo, as the Pi's first user is), with
`sudo` only where the guide writes it. What the test changes, and nothing else:
- paths: /opt/qis-edge, /etc/qis-gateway, /etc/mosquitto, /etc/systemd/system, /var/lib/qis-gateway move
  under a fresh directory; HOME is a directory of its own;
- ports: 1883 (broker), 4000 (swarm), 9108 (metrics) become free loopback ports, 0.0.0.0 becomes 127.0.0.1;
- the service account `qis` gets a unique name (several runs may share a machine), `hostname -I` is the
  loopback address; the login user's sudo rule is a file in /etc/sudoers.d, removed afterwards;
- `pip install .` installs the wheel built once per session from this checkout (what `pip install .`
  builds), into the clean venv the guide's block creates (not editable, not the dev venv);
- `systemctl` is tests/field/systemctl_shim.py: systemd does not run in CI, so the stand-in starts the
  gateway from the unit file's ExecStart, User=, Group=, UMask=, EnvironmentFile= and StateDirectory=,
  and Debian's Mosquitto with a copy of Debian's stock /etc/mosquitto/mosquitto.conf (paths moved).
- The emulated board's device.json gets `interval_s: 1` and a `sim_outcome` rule (docs/device.md) before
  the flashing.md block deploys it, so the board reports outcomes and the run stays short.
Between blocks the test checks what the guide promises.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.broker import free_port
from support.ha_discovery import check_sensor_discovery
from support.stock_mosquitto import StockMosquitto, stock_available

from tests.field.docblocks import marked_blocks, substitute

ROOT = Path(__file__).resolve().parents[2]
PI_GUIDE, FLASH_GUIDE = ROOT / "docs" / "raspberry-pi.md", ROOT / "docs" / "flashing.md"
# How many blocks each guide marks: a block added or removed must be seen here (and run below).
PI_BLOCKS, FLASH_BLOCKS = 8, 1


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the field test creates a service account (useradd) and runs the guides' sudo steps: run as root"
    for tool in ("sudo", "useradd", "userdel", "setpriv", "curl"):
        if shutil.which(tool) is None:
            return "needs %s (scripts/system-deps.sh installs the Debian packages)" % tool
    return stock_available()


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds from this checkout, built once per session."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, timeout=300, capture_output=True)
    (found,) = out.glob("qis_edge-*.whl")
    return found


class Field:
    """The moved file system, the substitutions and one shell session that runs the guides' blocks."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        self.user = "qisft%d" % os.getpid()
        self.admin = "qisadm%d" % os.getpid()  # the guide's reader: a normal user who may sudo
        self.prefix = root / "opt" / "qis-edge"
        self.etc_gw = root / "etc" / "qis-gateway"
        self.data = root / "var" / "lib" / "qis-gateway"
        self.units = root / "etc" / "systemd" / "system"
        self.home = root / "home"
        self.shim = root / "shim"
        self.session = root / "session"
        for d in (self.prefix / "deploy", self.units, self.home, self.shim, self.session, root / "var" / "lib"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "deploy" / "qis-gateway.service", self.prefix / "deploy")
        self.broker = StockMosquitto(root)  # root/etc/mosquitto/{mosquitto.conf (Debian's, paths moved), conf.d}
        self.mqtt_port, self.metrics_port, self.swarm_port = free_port(), free_port(), free_port()
        self.paths = [("/opt/qis-edge", str(self.prefix)), ("/etc/qis-gateway", str(self.etc_gw)),
                      ("/etc/mosquitto/", str(self.broker.etc) + "/"), ("/etc/systemd/system", str(self.units)),
                      ("/var/lib/qis-gateway", str(self.data))]
        self.ports = [("0.0.0.0:", "127.0.0.1:"), ("1883", str(self.mqtt_port)), ("9108", str(self.metrics_port)),
                      ("4000", str(self.swarm_port))]
        self.subs: list[tuple[str | re.Pattern[str], str]] = [
            *self.paths, *self.ports,
            ("$(hostname -I | cut -d' ' -f1)", "127.0.0.1"),
            (re.compile(r"(?<![\w/.=-])qis(?![\w/.-])"), self.user),
            ("pip install .", "pip install %s" % wheel),
            (re.compile(r"(?<![\w/-])systemctl "), "%s/systemctl " % self.shim),
        ]
        shim = self.shim / "systemctl"
        # the system Python (the stand-in uses the standard library only; the dev venv may not be readable)
        shim.write_text("#!/usr/bin/python3\n%s" % (Path(__file__).parent / "systemctl_shim.py").read_text())
        shim.chmod(0o755)
        (self.shim / "state.json").write_text(json.dumps({
            "subs": [*self.paths, ("User=qis", "User=%s" % self.user), ("Group=qis", "Group=%s" % self.user)],
            "unit_dir": str(self.units), "run_dir": str(root / "run"), "journal": str(self.journal),
            "mosquitto": shutil.which("mosquitto") or "/usr/sbin/mosquitto", "mosquitto_conf": str(self.broker.conf),
            "mosquitto_pid": str(self.broker.run / "mosquitto.pid")}))
        (self.session / "cwd").write_text(str(root))
        (self.session / "env").write_text("export HOME=%s USER=%s PATH=/usr/local/bin:/usr/bin:/bin\n" % (
            self.home, self.admin))
        subprocess.run(["useradd", "--home-dir", str(self.home), "--no-create-home", "--shell", "/bin/bash",
                        self.admin], check=True, capture_output=True, timeout=30)
        for path in (self.home, self.session, *self.session.iterdir()):
            shutil.chown(path, self.admin, self.admin)
        self.sudoers = Path("/etc/sudoers.d/qis-field-%d" % os.getpid())
        self.sudoers.write_text("%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % self.admin)
        self.sudoers.chmod(0o440)
        self.outputs: list[str] = []

    @property
    def journal(self) -> Path:
        return self.root / "journal" / "qis-gateway.log"

    def run(self, block: str, timeout_s: float = 180.0) -> str:
        """One guide block, substituted, in the session's shell state; returns its output."""
        script = substitute(block, self.subs)
        s = self.session
        wrapped = ('cd "$(cat %s/cwd)"\n. %s/env\nset -e\n%s\npwd > %s/cwd\nexport -p > %s/env\n'
                   % (s, s, script, s, s))
        res = subprocess.run(["setpriv", "--reuid=%s" % self.admin, "--regid=%s" % self.admin, "--init-groups",
                              "bash", "-c", wrapped], capture_output=True, text=True, timeout=timeout_s, cwd="/",
                             env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        out = res.stdout + res.stderr
        self.outputs.append(out)
        assert res.returncode == 0, "guide block failed (exit %d):\n%s\n--- output ---\n%s\n--- gateway log ---\n%s" % (
            res.returncode, script, out[-4000:], self.log()[-3000:])
        return out

    def log(self) -> str:
        return self.journal.read_text() if self.journal.exists() else ""

    def http(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.metrics_port, path), timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait(self, predicate, what: str, timeout_s: float = 60.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("timed out waiting for %s\n--- gateway log ---\n%s\n--- broker ---\n%s" % (
            what, self.log()[-3000:], self.broker.diagnostics()))

    def env_file(self, path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    def cleanup(self) -> None:
        for name in ("qis-gateway", "mosquitto"):
            subprocess.run([str(self.shim / "systemctl"), "stop", name], capture_output=True, timeout=60)
        self.sudoers.unlink(missing_ok=True)
        for user in (self.user, self.admin):
            subprocess.run(["userdel", user], capture_output=True, timeout=30)


def mqtt_login(port: int, user: str, password: str, subscribe: str | None = None,
               seen: list | None = None) -> tuple[paho.Client, int]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="field-%s-%d" % (user, time.monotonic_ns()))
    c.username_pw_set(user, password)
    done, result = threading.Event(), []

    def on_connect(client, userdata, flags, reason, props):  # noqa: ANN001
        result.append(reason.value)
        if subscribe and not reason.is_failure:
            client.subscribe(subscribe, 1)
        done.set()

    c.on_connect = on_connect
    if seen is not None:
        c.on_message = lambda client, userdata, msg: seen.append((msg.topic, msg.payload))
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    done.wait(10)
    return c, (result[0] if result else -1)


def close(c: paho.Client) -> None:
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def field(wheel: Path) -> Iterator[Field]:
    root = Path(tempfile.mkdtemp(prefix="qis-field-"))
    os.chmod(root, 0o755)  # the service account and the broker's account must reach their files
    f = Field(root, wheel)
    try:
        yield f
    finally:
        f.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_the_guides_work_as_written(field: Field) -> None:
    pi, flash = marked_blocks(PI_GUIDE), marked_blocks(FLASH_GUIDE)
    assert (len(pi), len(flash)) == (PI_BLOCKS, FLASH_BLOCKS), "marked blocks changed: update this test"
    install, configure, register, service, check, homeassistant, later, rotate = pi
    t0 = time.monotonic()

    # 2. install: a real wheel in a clean venv, not editable
    assert "qis-edge installed" in field.run(install, timeout_s=600)
    site = list((field.prefix / ".venv" / "lib").glob("python3*/site-packages"))[0]
    assert (site / "qis_gateway" / "__init__.py").exists() and not list(site.glob("__editable__*"))
    assert not list(site.glob("*.pth")) or all("qis" not in p.read_text() for p in site.glob("*.pth"))

    # 3. configure: the check works as the service user on an empty data dir
    assert "no boards registered yet" in field.run(configure)

    # 4. a board, the broker config and Debian's stock Mosquitto with our drop-in
    field.run(register)
    registry = field.data / "registry.sqlite"
    st = registry.stat()
    assert st.st_mode & 0o777 == 0o600 and pwd.getpwuid(st.st_uid).pw_name == field.user
    # Someone who is not the service user gets one line and exit 2, not a traceback (point 4).
    res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          str(field.prefix / ".venv" / "bin" / "qis-gateway"), "device", "list", "--config",
                          str(field.etc_gw / "gateway.toml")], capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 2 and "permission denied" in res.stderr and len(res.stderr.strip().splitlines()) == 1, (
        res.stdout + res.stderr)
    board_json = field.home / "pump-01.device.json"
    assert board_json.stat().st_mode & 0o777 == 0o600
    assert json.loads(board_json.read_text())["fixed"] == {"machine_class": "pump"}
    gw_env = field.env_file(field.etc_gw / "gateway.env")
    c, rc = mqtt_login(field.mqtt_port, gw_env["QIS_MQTT_USERNAME"], gw_env["QIS_MQTT_PASSWORD"])
    assert rc == 0, field.broker.diagnostics()
    close(c)

    # 5. the service: the unit's ExecStart as the service user, with its env file
    field.run(service)
    field.wait(lambda: field.http("/health")[1].get("mqtt_connected") is True, "gateway connected to the broker")
    pid = int((field.root / "run" / "qis-gateway.pid").read_text())
    uid = int(Path("/proc/%d/status" % pid).read_text().split("Uid:")[1].split()[0])
    assert pwd.getpwuid(uid).pw_name == field.user

    # 6. check: a lone gateway says it is degraded, plainly, everywhere
    out = field.run(check)
    assert "DEGRADED" in out and "no swarm peers" in out, out
    code, health = field.http("/health")
    assert code == 200 and health["status"] == "degraded" and health["ok"] is False
    assert "process_resident_memory_bytes" in out
    assert "degraded: no swarm peers" in field.log()

    # flashing.md: deploy from the installed wheel to an emulated board, run it under the unix port
    cfg = json.loads(board_json.read_text())
    cfg["interval_s"] = 1
    cfg["sim_outcome"] = {"field": "vibration_band", "labels": {"A": "ok", "B": "ok", "C": "wear", "D": "failure"}}
    board_json.write_text(json.dumps(cfg))
    out = field.run(flash[0], timeout_s=240)
    ns = [int(n) for n in re.findall(r"summary re=\d+ n=(\d+)", out)]
    assert ns and max(ns) > 0, "no summary with n > 0 from a lone gateway:\n%s" % out[-3000:]

    # 7. Home Assistant: its own login, discovery valid by Home Assistant's rules, availability
    field.run(homeassistant)
    ha_env = field.env_file(field.broker.etc / "qis" / "homeassistant.env")
    seen: list[tuple[str, bytes]] = []
    ha, rc = mqtt_login(field.mqtt_port, ha_env["MQTT_USERNAME"], ha_env["MQTT_PASSWORD"], "homeassistant/#", seen)
    assert rc == 0
    ha.subscribe("qis-ha/#", 1)
    cfg_topic = "homeassistant/sensor/qis_plant-a_%s/config"

    def last(topic: str) -> bytes | None:
        got = [p for t, p in seen if t == topic]
        return got[-1] if got else None

    field.wait(lambda: last(cfg_topic % "pump-01"), "pump-01's discovery config")
    assert check_sensor_discovery(json.loads(last(cfg_topic % "pump-01") or b"{}")) == []
    field.wait(lambda: any(t.endswith("/availability") and p == b"online" for t, p in seen), "gateway online")
    field.wait(lambda: field.http("/health")[1].get("mqtt_connected") is True, "gateway reconnected after restart")
    connects = field.http("/status")[1]["mqtt"]["connects"]

    # 8. later: a board added, one revoked, broker-config re-run and the broker reloaded, gateway connected
    out = field.run(later)
    assert "REVOKED" in out and "fan-02" in out
    time.sleep(1.5)
    status = field.http("/status")[1]
    assert status["mqtt"]["connected"] is True and status["mqtt"]["connects"] == connects, status
    assert "Not authorized" not in field.log() and "not authorised" not in field.log().lower()
    fan = json.loads((field.data / "boards" / "fan-02.device.json").read_text())
    c, rc = mqtt_login(field.mqtt_port, "fan-02", fan["broker"]["password"])
    assert rc == 0
    close(c)
    _, rc = mqtt_login(field.mqtt_port, "pump-01", cfg["broker"]["password"])
    assert rc != 0  # revoked: no login any more
    field.wait(lambda: last(cfg_topic % "fan-02"), "fan-02 announced without a restart")
    field.wait(lambda: last(cfg_topic % "pump-01") == b"", "pump-01's discovery config cleared")
    c, rc = mqtt_login(field.mqtt_port, ha_env["MQTT_USERNAME"], ha_env["MQTT_PASSWORD"])
    assert rc == 0  # Home Assistant's login survived the re-run
    close(c)
    close(ha)

    # 9. --rotate: broker and env file move together; the restarted gateway connects with the new password
    field.run(rotate)
    new_env = field.env_file(field.etc_gw / "gateway.env")
    assert new_env["QIS_MQTT_PASSWORD"] != gw_env["QIS_MQTT_PASSWORD"]
    field.wait(lambda: field.http("/health")[1].get("mqtt_connected") is True, "gateway reconnected, new password")
    _, rc = mqtt_login(field.mqtt_port, gw_env["QIS_MQTT_USERNAME"], gw_env["QIS_MQTT_PASSWORD"])
    assert rc != 0  # the old password is gone
    c, rc = mqtt_login(field.mqtt_port, ha_env["MQTT_USERNAME"], ha_env["MQTT_PASSWORD"])
    assert rc == 0
    close(c)
    print("field test: guides walked in %.0f s; lone gateway summaries n up to %d" % (time.monotonic() - t0, max(ns)))
