"""The only module that touches pyserial: port checks before a tool opens a port, and the console monitor.

How it works: `check_port` runs before esptool or mpremote get the port, so the two most common
failures get one clear message each instead of a tool's traceback: the port does not exist (we list
the ports that do), or it exists but the user may not open it (on Linux the fix is the `dialout`
group). It uses `os.access`, never opens the port: opening a USB-serial port toggles DTR/RTS, which
resets most ESP32 boards. Network ports (`rfc2217://`, `socket://`) are left to the tool.
`monitor` copies bytes from the port to an output stream until interrupted or a deadline passes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import BinaryIO

from qis_firmware.errors import NoSuchPort, PortPermissionDenied, ToolError

log = logging.getLogger(__name__)

DIALOUT_HINT = ("add yourself to the group that owns serial ports and log in again: "
                "`sudo usermod -aG dialout $USER` (the group is `uucp` on Arch; check with `ls -l %s`)")


def available_ports() -> list[str]:
    """Serial ports the OS lists (USB-serial adapters, built-in UARTs)."""
    try:
        from serial.tools import list_ports
    except ImportError:  # pyserial comes with esptool and mpremote; be polite if it is missing
        return []
    return sorted(p.device for p in list_ports.comports())


def check_port(port: str) -> None:
    """Raise NoSuchPort / PortPermissionDenied when `port` cannot be used; network URLs pass through."""
    if not port:
        raise NoSuchPort("no serial port given; pass --port (e.g. /dev/ttyUSB0, /dev/ttyACM0, COM3)")
    if "://" in port or os.name == "nt":
        return
    if not os.path.exists(port):
        found = available_ports()
        listing = ", ".join(found) if found else "none found; is the board plugged in with a data cable?"
        raise NoSuchPort("serial port %s does not exist. Ports present: %s" % (port, listing))
    if not os.access(port, os.R_OK | os.W_OK):
        raise PortPermissionDenied("permission denied on serial port %s; %s" % (port, DIALOUT_HINT % port))


def monitor(port: str, *, baud: int = 115200, duration_s: float | None = None,
            out: BinaryIO | None = None) -> int:
    """Copy the board's console to `out` (stdout) until Ctrl-C or `duration_s`; return bytes copied."""
    check_port(port)
    import serial

    sink = out if out is not None else sys.stdout.buffer
    try:
        conn = serial.serial_for_url(port, baudrate=baud, timeout=0.1)
    except serial.SerialException as exc:
        if "Permission denied" in str(exc):
            raise PortPermissionDenied("permission denied on serial port %s; %s" % (port, DIALOUT_HINT % port)) \
                from exc
        raise ToolError("cannot open %s: %s" % (port, exc)) from exc
    deadline = None if duration_s is None else time.monotonic() + duration_s
    copied = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                data = conn.read(256)
            except serial.SerialException as exc:
                raise ToolError("lost the serial port %s: %s (board unplugged or reset?)" % (port, exc)) from exc
            if data:
                sink.write(data)
                sink.flush()
                copied += len(data)
    except KeyboardInterrupt:
        log.info("monitor stopped by Ctrl-C")
    finally:
        conn.close()
    return copied
