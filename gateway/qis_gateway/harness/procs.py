"""A group of child processes that is torn down whatever happens (test failure, Ctrl-C, SIGTERM).

How it works: every child starts in its own session (so a SIGKILL aimed at a gateway never hits the
harness, and a child's own children go with it), writes stdout+stderr to `<logdir>/<name>.log`, and is
remembered by name. `close()` sends SIGTERM to every live child, waits up to `grace_s`, then SIGKILLs
the rest; it runs from `__exit__`, from an atexit hook and on SIGTERM, so nothing is left running.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ProcessGroup:
    def __init__(self, logdir: Path, grace_s: float = 10.0) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        atexit.register(self.close)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError("process %r is already running" % name)
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.logdir / ("%s.log" % name), "ab") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                    start_new_session=True)
        self.procs[name] = proc
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
        return proc

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, no cleanup -- a power cut as the process sees it."""
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def stop(self, name: str, timeout_s: float | None = None) -> int | None:
        """SIGTERM and wait; SIGKILL when the grace period runs out. Returns the exit status."""
        proc = self.procs[name]
        if proc.poll() is None:
            self.signal(name, signal.SIGCONT)
            self.signal(name, signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", name, self.grace_s)
                self.kill(name)
        return proc.returncode

    def wait(self, name: str, timeout_s: float) -> int:
        return self.procs[name].wait(timeout=timeout_s)

    def log_text(self, name: str) -> str:
        path = self.logdir / ("%s.log" % name)
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        live = [n for n, p in self.procs.items() if p.poll() is None]
        for name in live:
            try:
                self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.grace_s
        for name in live:
            proc = self.procs[name]
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
