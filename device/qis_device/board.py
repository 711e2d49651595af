"""What differs between a real board and the unix port: WiFi, watchdog, LED, deep sleep, logging.

How it works: UNIX is true on the unix port (sys.platform "linux"/"darwin"); there WiFi is skipped,
the watchdog and LED are no-ops and deep sleep becomes a plain sleep. On boards, `network` and
`machine` are imported inside the functions that need them, so nothing is imported at module load.
"""

import sys
import time

UNIX = sys.platform in ("linux", "darwin")


def log(msg):
    """One console line; the board has no `logging` module."""
    print("qis:", msg)


def wifi_connect(wifi, timeout_s, feed=None):
    """Connect the station interface with exponential backoff (1 s doubling to 30 s) until it is up.

    Returns True when connected (always on the unix port). `feed` is called while waiting so the
    watchdog does not fire during a long association.
    """
    if UNIX or not wifi:
        return True
    import network

    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if sta.isconnected():
        return True
    backoff_ms = 1000
    while True:
        log("wifi: connecting to %r" % wifi["ssid"])
        try:
            sta.connect(wifi["ssid"], wifi.get("password") or "")
        except OSError as exc:
            log("wifi: connect failed: %r" % (exc,))
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < timeout_s * 1000:
            if sta.isconnected():
                log("wifi: up, address %s" % sta.ifconfig()[0])
                return True
            if feed:
                feed()
            time.sleep_ms(200)
        try:
            sta.disconnect()
        except OSError:
            pass
        log("wifi: no connection, retrying in %d ms" % backoff_ms)
        _sleep_fed(backoff_ms, feed)
        backoff_ms = min(backoff_ms * 2, 30000)


def wifi_ok(wifi):
    if UNIX or not wifi:
        return True
    import network

    return network.WLAN(network.STA_IF).isconnected()


def _sleep_fed(ms, feed):
    while ms > 0:
        step = min(ms, 1000)
        time.sleep_ms(step)
        ms -= step
        if feed:
            feed()


class Watchdog:
    """machine.WDT where the port has it (never stoppable once armed); a no-op elsewhere."""

    def __init__(self, timeout_ms):
        self.wdt = None
        if UNIX or not timeout_ms:
            return
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
        if pin is None or UNIX:
            return
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
    """Sleep with the CPU off (real boards: wake is a reset, state lives on flash); unix: plain sleep."""
    if UNIX:
        time.sleep_ms(ms)
        return
    import machine

    machine.deepsleep(ms)


def free_heap():
    import gc

    return gc.mem_free()
