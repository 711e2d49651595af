"""What differs between a real board and the unix port, kept tiny because it is always resident.

UNIX is true on the unix port (sys.platform "linux"/"darwin"): there the watchdog and LED are no-ops.
On boards the real ones come from qis_device.periph, WiFi from qis_device.wifi (imported by the
connect code) and deep sleep from periph.deep_sleep, all imported only when used. unload() forgets
a module that was needed once, so gc can free its code.
"""

import sys

UNIX = sys.platform in ("linux", "darwin")


def log(msg):
    """One console line; the board has no `logging` module."""
    print("qis:", msg)


def unload(name):
    """Forget a module needed only once (config checks, schema parsing) so gc can free its code."""
    mod = sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if mod is not None and parent in sys.modules:
        try:
            delattr(sys.modules[parent], child)
        except AttributeError:
            pass


class _Null:
    """Stands in for the watchdog and the LED where there are none (the unix port, or not configured)."""

    def feed(self):
        pass

    def blink_confidence(self, conf_permille):
        pass


def watchdog(timeout_ms):
    """An object with feed(): machine.WDT on boards (qis_device.periph), a no-op on the unix port."""
    if UNIX or not timeout_ms:
        return _Null()
    from qis_device.periph import Watchdog

    return Watchdog(timeout_ms)


def led(pin):
    """An object with blink_confidence(permille); a no-op without a pin or on the unix port."""
    if UNIX or pin is None:
        return _Null()
    from qis_device.periph import Led

    return Led(pin)
