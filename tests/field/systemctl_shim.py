"""A stand-in for `systemctl` in the field test (systemd does not run in CI), used by the guide's
commands as written. It reads the state file beside it (`state.json`: the test's substitutions and
directories) and does what systemd would do with the unit files the guide installs:

    qis-gateway: start = create the StateDirectory (mode StateDirectoryMode, owned by User=), read the
                 EnvironmentFile (as root, as systemd does), run ExecStart as User=/Group= with UMask=,
                 output to journal/qis-gateway.log; stop = KillSignal (SIGTERM), wait TimeoutStopSec.
    mosquitto:   Debian's unit: `mosquitto -c /etc/mosquitto/mosquitto.conf` (here the test's copy of the
                 stock file), daemonised, its pid from the stock pid_file; reload = SIGHUP.
    daemon-reload, enable (no-op; `enable --now` starts), status (exit 0 when running, 3 when not).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = json.loads((HERE / "state.json").read_text())


def sub(text: str) -> str:
    for old, new in STATE["subs"]:
        text = text.replace(old, new)
    return text


def unit(name: str) -> dict[str, list[str]]:
    path = Path(STATE["unit_dir"]) / ("%s.service" % name)
    out: dict[str, list[str]] = {}
    for line in sub(path.read_text()).splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def pid_file(name: str) -> Path:
    return Path(STATE["mosquitto_pid"]) if name == "mosquitto" else Path(STATE["run_dir"]) / ("%s.pid" % name)


def running_pid(name: str) -> int | None:
    try:
        pid = int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # it runs, as another account (`systemctl status` needs no root)
    except OSError:
        return None
    try:  # a zombie is not running
        if Path("/proc/%d/stat" % pid).read_text().split(") ")[1].startswith("Z"):
            return None
    except (OSError, IndexError):
        pass
    return pid


def start(name: str) -> None:
    if running_pid(name):
        return
    if name == "mosquitto":
        subprocess.run([STATE["mosquitto"], "-c", STATE["mosquitto_conf"], "-d"], check=True, timeout=30)
        for _ in range(100):
            if running_pid(name):
                break
            time.sleep(0.05)
        return
    u = unit(name)
    user = pwd.getpwnam(u["User"][0])
    state_dir = Path("/var/lib/%s" % u["StateDirectory"][0])
    state_dir = Path(sub(str(state_dir)))
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chown(state_dir, user.pw_uid, user.pw_gid)
    os.chmod(state_dir, int(u.get("StateDirectoryMode", ["0755"])[0], 8))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": user.pw_dir, "USER": user.pw_name}
    for entry in u.get("EnvironmentFile", []):
        optional = entry.startswith("-")
        path = Path(entry.lstrip("-"))
        if not path.exists():
            if optional:
                continue
            sys.exit("systemctl (test stand-in): %s missing" % path)
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                env[key.strip()] = value.strip()
    argv = shlex.split(u["ExecStart"][0])
    umask = int(u.get("UMask", ["0022"])[0], 8)
    log = Path(STATE["journal"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid, "--init-groups", "--"] + argv,
            env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd="/", start_new_session=True,
            preexec_fn=lambda: os.umask(umask))
    pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    pid_file(name).write_text("%d\n" % proc.pid)


def stop(name: str) -> None:
    pid = running_pid(name)
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    timeout_s = float(unit(name).get("TimeoutStopSec", ["30"])[0]) if name != "mosquitto" else 10.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(name):
        time.sleep(0.05)
    if running_pid(name):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--") or a == "--now"]
    if not args:
        return 1
    verb, names = args[0], [a.removesuffix(".service") for a in args[1:] if a != "--now"]
    if verb == "daemon-reload":
        return 0
    for name in names:
        if verb in ("start",) or (verb == "enable" and "--now" in args):
            start(name)
        elif verb == "stop":
            stop(name)
        elif verb == "restart":
            stop(name)
            start(name)
        elif verb == "reload":
            pid = running_pid(name)
            if not pid:
                print("%s is not running" % name, file=sys.stderr)
                return 1
            os.kill(pid, signal.SIGHUP)
        elif verb == "status":
            pid = running_pid(name)
            print("%s.service - %s\n   Active: %s" % (name, "test stand-in", "active (running) pid %d" % pid
                                                       if pid else "inactive (dead)"))
            if not pid:
                return 3
        elif verb != "enable":
            print("systemctl (test stand-in): %s not supported" % verb, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
