"""WiFi station connect with exponential backoff, for real boards (never imported on the unix port)."""

import time

import network

from qis_device.board import log


def wifi_ok(wifi):
    return not wifi or network.WLAN(network.STA_IF).isconnected()


def wifi_connect(wifi, timeout_s, feed=None):
    """Connect the station interface with exponential backoff (1 s doubling to 30 s) until it is up.

    Returns True when connected (always on the unix port). `feed` is called while waiting so the
    watchdog does not fire during a long association.
    """
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


def _sleep_fed(ms, feed):
    while ms > 0:
        step = min(ms, 1000)
        time.sleep_ms(step)
        ms -= step
        if feed:
            feed()
