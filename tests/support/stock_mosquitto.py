"""Debian's Mosquitto as a Raspberry Pi runs it: the distribution's own /etc/mosquitto/mosquitto.conf,
copied with its paths moved under a test directory (pid file, persistence location, log, conf.d), so it
runs beside other brokers and never touches the system's. Started as root it drops to the `mosquitto`
account exactly as the Debian service does, so file ownership and modes are tested too.

`StockMosquitto(root)` lays out root/etc/mosquitto/{mosquitto.conf,conf.d/}, root/var/lib/mosquitto and
root/run/mosquitto; `.start()`, `.reload()` (SIGHUP, what `systemctl reload mosquitto` sends),
`.restart()`, `.stop()`. It does not pick the listener: our generated drop-in does.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

STOCK_CONF = Path("/etc/mosquitto/mosquitto.conf")


def stock_available() -> str | None:
    """None if the stock set-up can run here, else the reason it cannot."""
    from support.broker import mosquitto_path

    if mosquitto_path() is None:
        return "needs Debian's mosquitto package (scripts/system-deps.sh installs it as root)"
    if not STOCK_CONF.exists():
        return "needs Debian's stock %s (the mosquitto package)" % STOCK_CONF
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("mosquitto")
        except KeyError:
            return "needs the mosquitto account the Debian package creates"
    return None


class StockMosquitto:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc" / "mosquitto"
        self.confd = self.etc / "conf.d"
        self.data = root / "var" / "lib" / "mosquitto"
        self.run = root / "run" / "mosquitto"
        self.log = root / "var" / "log" / "mosquitto" / "mosquitto.log"
        for d in (self.confd, self.data, self.run, self.log.parent):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # what the package's postinst does
            user = pwd.getpwnam("mosquitto")
            for d in (self.data, self.run, self.log.parent):
                os.chown(d, user.pw_uid, user.pw_gid)
        self.conf = self.etc / "mosquitto.conf"
        self.conf.write_text(self.paths_moved(STOCK_CONF.read_text()))
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = root / "mosquitto.stderr"

    def paths_moved(self, text: str) -> str:
        """The stock file's absolute paths, moved under root (the only change made to it)."""
        return (text.replace("/run/mosquitto/", "%s/" % self.run).replace("/var/lib/mosquitto/", "%s/" % self.data)
                .replace("/var/log/mosquitto/", "%s/" % self.log.parent)
                .replace("/etc/mosquitto/conf.d", str(self.confd)))

    def start(self, port: int | None = None, timeout_s: float = 10.0) -> None:
        from support.broker import mosquitto_path, wait_listening

        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen([mosquitto_path() or "mosquitto", "-c", str(self.conf)],
                                         stdout=err, stderr=err)
        if port is not None:
            deadline = time.monotonic() + timeout_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    wait_listening("127.0.0.1", port, 0.5)
                    return
                except Exception:
                    continue
            raise AssertionError("mosquitto did not listen on %d: %s" % (port, self.diagnostics()))

    def diagnostics(self) -> str:
        parts = []
        for f in (self.stderr, self.log):
            if f.exists():
                parts.append(f.read_text()[-2000:])
        return " | ".join(parts) or "no output"

    def reload(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.diagnostics()
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, port: int | None = None) -> None:
        self.stop()
        self.start(port)
