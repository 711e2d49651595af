"""`qis-device flash`: put MicroPython on a board.

How it works:
1. Read the head of the firmware file and, for `--chip auto`, ask the attached chip which it is
   (esptool's ROM detection); in `--dry-run` nothing touches a port, so auto takes the chip named in
   the image header, and an image that names no chip (ESP8266) needs an explicit `--chip`.
2. Refuse an image whose header names another chip (chips.check_image).
3. Espressif chips: build the esptool invocation (offset and flash mode from chips.CHIPS), print it,
   and run it unless `--dry-run`. rp2: there is no esptool; print the UF2 copy steps instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from qis_firmware import chips, esptool_adapter, serialport
from qis_firmware.errors import FirmwareImageMismatch, UsageError

log = logging.getLogger(__name__)

HEAD_BYTES = 64

RP2_STEPS = """\
rp2 boards (Raspberry Pi Pico W / Pico 2 W) are not flashed with esptool; copy the UF2 file instead:
  1. Unplug the board. Hold the BOOTSEL button and plug it in (or, if MicroPython already runs on it:
     `mpremote connect {port} bootloader`). Release BOOTSEL.
  2. A USB drive named RPI-RP2 (RP2040) or RP2350 appears.
  3. Copy the firmware onto it:  cp {firmware} /media/$USER/RPI-RP2/   (Linux; use the drive letter on
     Windows, /Volumes/RPI-RP2 on macOS)
  4. The board reboots into MicroPython by itself and shows up as a serial port (/dev/ttyACM0 on
     Linux). Then: qis-device deploy --port /dev/ttyACM0 --config device.json
To erase the old filesystem as well, first copy flash_nuke.uf2 (from the Raspberry Pi documentation)
the same way."""


@dataclass(frozen=True, slots=True)
class FlashPlan:
    chip: str
    argv: list[str] | None       # esptool argv; None for rp2
    image_note: str              # what the image check found
    instructions: str | None     # rp2 steps


def read_head(firmware: Path) -> bytes:
    try:
        with open(firmware, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except FileNotFoundError as exc:
        raise UsageError("firmware file %s does not exist; download it from https://micropython.org/download/"
                         % firmware) from exc
    except OSError as exc:
        raise UsageError("cannot read firmware file %s: %s" % (firmware, exc)) from exc


def resolve_chip(chip: str, head: bytes, port: str, *, dry_run: bool, baud: int) -> str:
    """The concrete chip name for `chip` (which may be 'auto')."""
    if chip != "auto":
        if chip not in chips.CHIP_CHOICES:
            raise UsageError("unknown chip %r; choose one of %s" % (chip, ", ".join(chips.CHIP_CHOICES)))
        return chip
    info = chips.inspect_image(head)
    if dry_run:
        if info.kind == "uf2":
            return chips.RP2
        named = chips.chip_for_image(info)
        if named is None:
            raise UsageError(
                "--dry-run with --chip auto cannot ask the board (a dry run touches no port) and the image "
                "header names no supported chip (%s); pass --chip" % info.chip_names())
        log.info("dry run: chip %s taken from the image header", named)
        return named
    if info.kind == "uf2":
        return chips.RP2  # RP2 boards in BOOTSEL mode have no serial ROM loader to ask
    serialport.check_port(port)
    display = esptool_adapter.detect_chip(port, baud=115200)
    named = chips.chip_from_display(display)
    if named is None:
        raise FirmwareImageMismatch(
            "the attached chip is an %s, which qis-device does not flash (supported: %s)"
            % (display, ", ".join(chips.CHIPS)))
    log.info("detected chip %s on %s", named, port)
    return named


def plan_flash(*, port: str, chip: str, firmware: Path, baud: int = esptool_adapter.DEFAULT_BAUD,
               erase: bool = False, dry_run: bool = False) -> FlashPlan:
    """Decide what `qis-device flash` does; touches the port only for `--chip auto` without dry run."""
    head = read_head(firmware)
    concrete = resolve_chip(chip, head, port, dry_run=dry_run, baud=baud)
    note = chips.check_image(concrete, head, firmware_name=str(firmware))
    if concrete == chips.RP2:
        return FlashPlan(concrete, None, note, RP2_STEPS.format(port=port or "PORT", firmware=firmware))
    if not port:
        raise UsageError("--port is required for %s (e.g. /dev/ttyUSB0, /dev/ttyACM0, COM3)" % concrete)
    argv = esptool_adapter.write_flash_argv(chips.CHIPS[concrete], port, firmware, baud=baud, erase=erase)
    return FlashPlan(concrete, argv, note, None)


def flash(*, port: str, chip: str, firmware: Path, baud: int = esptool_adapter.DEFAULT_BAUD,
          erase: bool = False, dry_run: bool = False, echo=print) -> FlashPlan:
    """Plan, print and (unless dry run) execute; returns the plan that was printed."""
    plan = plan_flash(port=port, chip=chip, firmware=firmware, baud=baud, erase=erase, dry_run=dry_run)
    echo("image check: %s" % plan.image_note)
    if plan.argv is None:
        echo(plan.instructions or "")
        return plan
    echo(("would run: " if dry_run else "running: ") + esptool_adapter.format_argv(plan.argv))
    if not dry_run:
        serialport.check_port(port)
        esptool_adapter.run_esptool(plan.argv)
    return plan
