# qis-edge board entry point (MicroPython runs main.py after boot.py). Thin on purpose: everything is
# in qis_device (see docs/device.md). A bad device.json is reported on the console by qis_device itself
# and never ends here; an unexpected crash is printed, then the board resets after 10 s (the flash queue
# and the sequence counter survive the reset). Ctrl-C at the REPL stops it.
import sys

try:
    import qis_device

    qis_device.main("device.json")
except KeyboardInterrupt:
    print("qis: stopped")
except Exception as exc:  # noqa: BLE001 - last line of defence on a board
    sys.print_exception(exc)
    import time

    time.sleep(10)
    import machine

    machine.reset()
