"""Board peripherals: hardware watchdog and status LED (imported by qis_device.board on real boards only)."""

import sys
import time

from qis_device.board import log


class Watchdog:
    """machine.WDT where the port has it (never stoppable once armed); a no-op elsewhere."""

    def __init__(self, timeout_ms):
        self.wdt = None
        try:
            from machine import WDT
        except ImportError:
            return
        if sys.platform == "rp2":
            timeout_ms = min(timeout_ms, 8388)  # RP2040 maximum
        try:
            self.wdt = WDT(timeout=timeout_ms)
        except (ValueError, OSError, TypeError):
            self.wdt = WDT()  # ESP8266: fixed system timeout
        log("watchdog armed (%d ms)" % timeout_ms)

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()


class Led:
    """Blink an LED: more blinks = higher confidence (1-5 blinks for 0-1000 permille)."""

    def __init__(self, pin):
        self.pin = None
        try:
            from machine import Pin

            self.pin = Pin(pin, Pin.OUT)
        except (ImportError, ValueError, TypeError) as exc:
            log("led: pin %r unusable: %r" % (pin, exc))

    def blink_confidence(self, conf_permille):
        if self.pin is None:
            return
        for _ in range(1 + min(4, conf_permille // 200)):
            self.pin.value(1)
            time.sleep_ms(60)
            self.pin.value(0)
            time.sleep_ms(120)


def deep_sleep(ms):
    """Sleep with the CPU off; the wake-up is a reset (state lives on flash: seq counter, queue)."""
    import machine

    machine.deepsleep(ms)
