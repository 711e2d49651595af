"""The only module that touches esptool (design rule 8, docs/design.md).

How it works: `write_flash_argv` builds the exact esptool 5 command line (esptool 5 spells its
commands `write-flash`, `erase-flash`; the old underscore spellings only warn). `format_argv` is what
`--dry-run` prints, and `run_esptool` runs the very same argv in-process through `esptool.main`, so the
printed invocation and the executed one cannot drift apart. `detect_chip` asks the ROM bootloader which
chip is attached (esptool's `detect_chip`) and closes the port again. esptool's FatalError and pyserial's
errors are translated into qis_firmware errors here.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from qis_firmware.chips import ChipSpec
from qis_firmware.errors import NoSuchPort, PortPermissionDenied, ToolError, UsageError

log = logging.getLogger(__name__)

ESPTOOL = "esptool"
DEFAULT_BAUD = 460800


def write_flash_argv(spec: ChipSpec, port: str, firmware: Path, *, baud: int = DEFAULT_BAUD,
                     erase: bool = False) -> list[str]:
    """esptool argv (first item 'esptool') writing `firmware` at the chip's MicroPython offset."""
    if baud <= 0:
        raise UsageError("--baud must be a positive number, got %d" % baud)
    argv = [ESPTOOL, "--chip", spec.esptool_name, "--port", port, "--baud", str(baud),
            "--before", "default-reset", "--after", "hard-reset",
            "write-flash", "--flash-mode", spec.flash_mode, "--flash-size", spec.flash_size]
    if erase:
        argv.append("--erase-all")  # erase the whole flash first (old filesystem included)
    argv += ["0x%x" % spec.offset, str(firmware)]
    return argv


def format_argv(argv: list[str]) -> str:
    """The invocation as a shell line (quoted where needed), exactly as run."""
    return shlex.join(argv)


def esptool_version() -> str:
    import esptool  # lazy: `qis-device deploy` never needs esptool

    return str(getattr(esptool, "__version__", "unknown"))


def _translate(port: str, exc: BaseException) -> Exception:
    text = str(exc)
    if "No such file" in text or ("could not open port" in text.lower() and "Errno 2" in text):
        return NoSuchPort("esptool: serial port %s does not exist (%s)" % (port, text.splitlines()[0]))
    if "Permission denied" in text or "Errno 13" in text:
        return PortPermissionDenied(
            "esptool: permission denied on %s; add yourself to the serial group: "
            "`sudo usermod -aG dialout $USER` (uucp on Arch), then log out and in" % port)
    return ToolError("esptool failed: %s" % text)


def run_esptool(argv: list[str]) -> None:
    """Run `argv` (as built above, first item 'esptool') in-process; raise FirmwareError on failure."""
    if not argv or argv[0] != ESPTOOL:
        raise UsageError("internal: esptool argv must start with %r" % ESPTOOL)
    import esptool

    port = argv[argv.index("--port") + 1] if "--port" in argv else "?"
    log.info("running %s", format_argv(argv))
    try:
        esptool.main(argv[1:])
    except esptool.FatalError as exc:
        raise _translate(port, exc) from exc
    except OSError as exc:  # pyserial's SerialException is an OSError
        raise _translate(port, exc) from exc
    except SystemExit as exc:  # click usage errors
        raise ToolError("esptool rejected the arguments (exit %s): %s" % (exc.code, format_argv(argv))) from exc


def detect_chip(port: str, baud: int = 115200) -> str:
    """Ask the attached chip's ROM which chip it is; return esptool's CHIP_NAME (e.g. 'ESP32-S3')."""
    import esptool
    from esptool.cmds import detect_chip as esptool_detect_chip

    try:
        esp = esptool_detect_chip(port=port, baud=baud)
    except esptool.FatalError as exc:
        raise _translate(port, exc) from exc
    except OSError as exc:
        raise _translate(port, exc) from exc
    try:
        return str(esp.CHIP_NAME)
    finally:
        try:
            esp._port.close()
        except Exception:  # noqa: BLE001 - closing a port that already failed must not hide the result
            log.debug("closing %s after detection failed", port, exc_info=True)
