"""A MicroPython board on a pseudo-terminal, so the mpremote path is tested without hardware.

How it works: `PtyBoard` opens a pty pair; mpremote (via qis_firmware.mpremote_adapter) opens the
slave end as if it were /dev/ttyUSB0. A thread on the master end speaks MicroPython's REPL protocol
the way ports/*/pyexec.c does: Ctrl-A enters the raw REPL ("raw REPL; CTRL-B to exit\\r\\n>"), Ctrl-D on
an empty line soft-resets ("soft reboot"), Ctrl-D after code answers "OK" and runs it, and raw-paste
mode (Ctrl-E "A" Ctrl-A -> "R\\x01" + window size, flow control with Ctrl-A per window) is supported
because mpremote prefers it. Output is framed like a board's: stdout, \\x04, traceback, \\x04, ">".

The code really runs: a long-lived MicroPython unix-port process (the "executor") executes each command
in one globals dict (mpremote keeps state such as an open file between commands), with its `/` mounted
on `root` through `vfs.VfsPosix`, so absolute board paths ("/qis/x.mpy") land in the test's directory.
`sys.implementation._mpy` is the unix port's own. `machine.reset()` (a mock module) ends the executor;
the next command starts a fresh one, as after a reboot; `resets` counts them.

`mode="other"` plays a board without MicroPython: it prints a boot banner and sensor lines and
ignores the REPL control characters, the way an Arduino sketch would.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import threading
import time
import tty
from pathlib import Path

from support.micropython import micropython_executable

WINDOW = 256
BANNER = b"raw REPL; CTRL-B to exit\r\n"

EXECUTOR = r"""
import sys, os, vfs
import machine
os.mount(vfs.VfsPosix(%(root)r), '/')
os.chdir('/')
g = {'__name__': '__main__'}
inp = sys.stdin.buffer
out = sys.stdout
while True:
    line = inp.readline()
    if not line:
        break
    n = int(line)
    code = b''
    while len(code) < n:
        code += inp.read(n - len(code))
    try:
        exec(code.decode(), g)
        out.write('\x04\x04')
    except SystemExit:
        out.write('\x04\x04')
        break
    except BaseException as e:
        out.write('\x04')
        sys.print_exception(e, out)
        out.write('\x04')
"""

MACHINE_MOCK = """
import sys
class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
    def feed(self):
        try:
            with open('/.wdt_feeds') as f:
                n = int(f.read())
        except OSError:
            n = 0
        with open('/.wdt_feeds', 'w') as f:
            f.write(str(n + 1))
def reset():
    sys.stdout.write('<<RESET>>')
    raise SystemExit
def unique_id():
    return b'\\x01\\x02\\x03\\x04'
"""


class PtyBoard:
    def __init__(self, root: Path, *, mode: str = "micropython", chatter: bytes = b"") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.chatter = chatter or b"ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\ntemp=21.5 C\r\n"
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.resets = 0
        self.soft_resets = 0
        self.commands: list[bytes] = []
        self._mocks = self.root.parent / (self.root.name + "-mocks")
        self._mocks.mkdir(exist_ok=True)
        (self._mocks / "machine.py").write_text(MACHINE_MOCK)
        self._executor: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-board", daemon=True)
        self._thread.start()

    # --- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> PtyBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._kill_executor()
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _kill_executor(self) -> None:
        proc, self._executor = self._executor, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def _start_executor(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(self._mocks)]))
        return subprocess.Popen([micropython_executable(), "-X", "heapsize=256K", "-c",
                                 EXECUTOR % {"root": str(self.root)}],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    # --- the wire ------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def _run(self) -> None:
        state = "friendly"
        buf = bytearray()
        window_used = 0
        last_chatter = 0.0
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if self.mode != "micropython":
                now = time.monotonic()
                if now - last_chatter > 0.2:
                    self._write(self.chatter)
                    last_chatter = now
                if ready:
                    try:
                        os.read(self.master, 4096)
                    except OSError:
                        return
                continue
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return  # the slave side went away
            for byte in data:
                ch = bytes([byte])
                if state == "paste":
                    if ch == b"\x04":
                        self._write(b"\x04")
                        self._execute(bytes(buf))
                        buf.clear()
                        state = "raw"
                        continue
                    buf += ch
                    window_used += 1
                    if window_used >= WINDOW:
                        window_used = 0
                        self._write(b"\x01")
                    continue
                if ch == b"\x01" and state == "raw" and buf.endswith(b"\x05A"):
                    del buf[-2:]  # Ctrl-E "A" Ctrl-A: raw-paste request
                    self._write(b"R\x01" + struct.pack("<H", WINDOW))
                    state = "paste"
                    window_used = 0
                elif ch == b"\x01":  # Ctrl-A: (re)enter the raw REPL
                    state = "raw"
                    buf.clear()
                    self._write(BANNER + b">")
                elif state == "friendly":
                    if ch == b"\x03":
                        self._write(b"\r\n>>> ")
                elif ch == b"\x02":  # Ctrl-B: friendly REPL
                    state = "friendly"
                    self._write(b"\r\nMicroPython (fake pty board)\r\n>>> ")
                elif ch == b"\x03":
                    buf.clear()
                elif ch == b"\x04":
                    if not buf.strip():
                        self._soft_reset()
                    else:
                        self._write(b"OK")
                        self._execute(bytes(buf))
                    buf.clear()
                else:
                    buf += ch

    def _soft_reset(self) -> None:
        self._kill_executor()
        self.soft_resets += 1
        self._write(b"MPY: soft reboot\r\n" + BANNER + b">")

    def _execute(self, code: bytes) -> None:
        self.commands.append(code)
        if self._executor is None or self._executor.poll() is not None:
            self._kill_executor()
            self._executor = self._start_executor()
        proc = self._executor
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"%d\n" % len(code) + code)
            proc.stdin.flush()
        except BrokenPipeError:
            self._write(b"\x04executor died\x04>")
            return
        seen = 0
        output = bytearray()
        while seen < 2:
            ch = proc.stdout.read(1)
            if not ch:  # machine.reset() ended the process
                break
            output += ch
            if ch == b"\x04":
                seen += 1
        if b"<<RESET>>" in output:
            self.resets += 1
            self._kill_executor()
            return  # a hard reset sends no prompt; the host closes the port
        self._write(bytes(output) + b">")
