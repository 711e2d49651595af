"""WiFi station connect for real boards (imported by the connect code only when "wifi" is configured
and never on the unix port).

How it works: wifi_connect() makes ONE association attempt bounded by wifi_timeout_s, feeding the
watchdog while it waits, and returns False when it fails. The backoff between attempts is the link's
reconnect backoff (reconnect_min_ms doubling to reconnect_max_ms, with jitter), so a board whose WiFi is
down keeps taking readings into its flash queue instead of blocking in a retry loop.
"""

import time

import network

from qis_device.board import log


def wifi_ok(wifi):
    return not wifi or network.WLAN(network.STA_IF).isconnected()


def wifi_connect(wifi, timeout_s, feed=None):
    """One bounded attempt to bring the station interface up; True when connected."""
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if sta.isconnected():
        return True
    log("wifi: connecting to %r" % wifi["ssid"])
    try:
        sta.connect(wifi["ssid"], wifi.get("password") or "")
    except OSError as exc:
        log("wifi: connect failed: %r" % (exc,))
        return False
    start = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), start) < timeout_s * 1000:
        if sta.isconnected():
            log("wifi: up, address %s" % sta.ifconfig()[0])
            return True
        if feed:
            feed()
        time.sleep_ms(200)
    try:
        sta.disconnect()  # stop the driver's own retries before the next attempt
    except OSError:
        pass
    log("wifi: no connection within %d s" % timeout_s)
    return False
