"""The only module that touches mpremote: a deploy target for a MicroPython board on a serial port.

How it works: one `SerialTransport` connection for the whole deploy (mpremote's CLI would reconnect per
command). Entering the raw REPL interrupts whatever runs (Ctrl-C) and soft-resets, so the board's main
loop stops and its heap is free while files are written; `main.py` does not run after a raw-REPL soft
reset. A watchdog armed by the board's program survives both, so the deploy takes it over and feeds
it before every file (WDT_SETUP). Files are written in 256-byte chunks with mpremote's
`fs_writefile`, parent directories first. `reset()` is mpremote's own hard reset (`machine.reset()`
after 100 ms, not followed), after which the board boots `main.py`. mpremote errors become qis_firmware errors here:
- cannot open the port -> NoSuchPort / PortPermissionDenied (serialport.check_port runs first), or
  PortError when another program holds it;
- no raw REPL banner within the timeout -> NotMicroPython (another firmware, or the port is in use);
  our own probe enforces that timeout, because mpremote's stops counting while bytes keep arriving
  (a board running chatty non-MicroPython firmware made it wait forever, found by tests/firmware);
- OSError text from the board (e.g. ENOSPC) -> ToolError with the board's message.
"""

from __future__ import annotations

import errno
import logging
import time

from qis_firmware import serialport
from qis_firmware.errors import NotMicroPython, PortError, ToolError
from qis_firmware.mpy import MpyTarget
from qis_firmware.targets import MPY_EXPR, check_board_path

log = logging.getLogger(__name__)

RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n"
# A watchdog the board's program armed keeps running after Ctrl-C and soft reset, and would reset the
# board in the middle of a deploy (RP2040's maximum is 8,388 ms). So the deploy takes the watchdog over
# (creating one arms it, which is harmless: the deploy ends with a reset) and feeds it before every file.
WDT_TIMEOUT_MS = 8000
WDT_SETUP = ("try:\n import machine\n _qis_wdt = machine.WDT(timeout=%d)\n _qis_wdt.feed()\n"
             "except Exception:\n _qis_wdt = None\n" % WDT_TIMEOUT_MS)
WDT_FEED = "if _qis_wdt:\n _qis_wdt.feed()\n"

NOT_MICROPYTHON = (
    "%s answered, but not with a MicroPython REPL (no raw REPL banner within %.0f s). Is MicroPython "
    "flashed (`qis-device flash --port %s --chip auto --firmware FILE`)? Is another program (a serial "
    "monitor, Thonny, screen) holding the port? Is the board busy in a loop that ignores Ctrl-C?")


class SerialTarget:
    def __init__(self, port: str, *, baud: int = 115200, raw_repl_timeout_s: float = 10.0) -> None:
        serialport.check_port(port)
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.label = port
        self._closed = False
        self._timeout_s = raw_repl_timeout_s
        try:
            # timeout: pty devices are read with blocking reads; bound them so a silent port cannot hang us.
            self._transport = SerialTransport(port, baudrate=baud, timeout=0.2)
        except TransportError as exc:
            raise PortError("cannot open %s (%s): another program holds it (a serial monitor, Thonny, screen, "
                            "another qis-device); close it and retry" % (port, exc)) from exc
        try:
            if not self._probe_raw_repl(raw_repl_timeout_s):
                raise TransportError("no raw REPL banner")
            self._transport.enter_raw_repl(soft_reset=True, timeout_overall=raw_repl_timeout_s)
        except TransportError as exc:
            self._close_quietly()
            raise NotMicroPython(NOT_MICROPYTHON % (port, raw_repl_timeout_s, port)) from exc
        except OSError as exc:
            self._close_quietly()
            raise ToolError("serial error on %s while entering the raw REPL: %s" % (port, exc)) from exc
        self._exec(WDT_SETUP, "taking over the watchdog")

    def _exec(self, code: str, what: str) -> None:
        from mpremote.transport import TransportError

        try:
            self._transport.exec(code)
        except (OSError, TransportError) as exc:
            raise ToolError("board %s: %s failed: %s" % (self.label, what, exc)) from exc

    def _probe_raw_repl(self, timeout_s: float) -> bool:
        """Ctrl-C, Ctrl-A and wait for the raw REPL banner within `timeout_s`, whatever else arrives.

        mpremote's own enter_raw_repl enforces its overall timeout only when the line goes quiet, so a
        board whose (non-MicroPython) firmware prints continuously would keep it waiting forever.
        """
        ser = self._transport.serial
        ser.write(b"\r\x03\x03")
        ser.write(b"\r\x01")
        deadline = time.monotonic() + timeout_s
        tail = b""
        while time.monotonic() < deadline:
            chunk = ser.read(max(1, ser.in_waiting))  # each read is bounded by the port timeout
            tail = (tail + chunk)[-512:]
            if RAW_REPL_BANNER in tail:
                return True
        return False

    def _close_quietly(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._transport.close()
        except OSError:
            log.debug("closing %s", self.label, exc_info=True)

    def _board_error(self, what: str, path: str, exc: Exception) -> ToolError:
        return ToolError("board %s: %s %s failed: %s" % (self.label, what, path, exc))

    def read_mpy_target(self) -> MpyTarget:
        from mpremote.transport import TransportError

        try:
            value = self._transport.eval(MPY_EXPR)
        except TransportError as exc:
            raise self._board_error("reading", "sys.implementation._mpy", exc) from exc
        return MpyTarget.from_sys_mpy(value if isinstance(value, int) else 0)

    def read_file(self, path: str) -> bytes | None:
        from mpremote.transport import TransportError

        check_board_path(path)
        try:
            return bytes(self._transport.fs_readfile("/" + path))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise self._board_error("reading", path, exc) from exc
        except TransportError as exc:
            raise self._board_error("reading", path, exc) from exc

    def _make_dirs(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:i])
            try:
                self._transport.fs_mkdir(folder)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise

    def write_file(self, path: str, data: bytes) -> None:
        from mpremote.transport import TransportError

        check_board_path(path)
        self._exec(WDT_FEED, "feeding the watchdog")
        try:
            self._make_dirs(path)
            self._transport.fs_writefile("/" + path, data)
        except (OSError, TransportError) as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC or "ENOSPC" in str(exc):
                raise ToolError("board %s: writing %s failed: the board's flash is full (remove files, or "
                                "`qis-device flash --erase` and deploy again)" % (self.label, path)) from exc
            raise self._board_error("writing", path, exc) from exc

    def remove_file(self, path: str) -> None:
        from mpremote.transport import TransportError

        check_board_path(path)
        self._exec(WDT_FEED, "feeding the watchdog")
        try:
            self._transport.fs_rmfile("/" + path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise self._board_error("removing", path, exc) from exc
        except TransportError as exc:
            raise self._board_error("removing", path, exc) from exc

    def reset(self) -> None:
        from mpremote.transport import TransportError

        try:
            self._transport.exec_raw_no_follow("import time, machine; time.sleep_ms(100); machine.reset()")
        except (OSError, TransportError) as exc:
            raise ToolError("board %s: reset failed: %s (press the reset button)" % (self.label, exc)) from exc
        finally:
            self._close_quietly()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._transport.exit_raw_repl()
        except OSError:
            log.debug("leaving the raw REPL on %s", self.label, exc_info=True)
        self._close_quietly()
