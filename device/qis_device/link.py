"""The link to the broker: reconnect policy layered over the core client (as umqtt.robust over simple).

How it works: Link.service(timeout_ms) does one bounded step and never raises for network trouble.
- Down: when the backoff deadline has passed it connects once (WiFi first on boards): last will
  (`offline` status frame, retained), CONNECT, resubscribe to the board's summary and error topics
  (QoS 1; a clean or lost session has no subscriptions), publish the retained `online` status (with
  the queue's drop count) and empty the flash queue in order. Failure doubles the backoff
  (reconnect_min_ms .. reconnect_max_ms, with jitter); success resets it.
- Up: it pings when nothing was sent for half the keepalive (MQTT-3.1.2-23; umqtt never pings) and
  declares the link dead when a ping is unanswered for the socket timeout, then waits for packets.
Any OSError marks the link down; the frame being published stays at the head of the flash queue (or is
appended to it) and is published again after the reconnect: QoS-1 duplicates are expected, the gateway
drops them by (device, seq). A MemoryError inside the client (possibly mid-packet: the stream can no
longer be trusted) is handled like an OSError: the link goes down and reconnects, after gc.collect(),
and it is counted in stats["mem_errors"] (the app's stats dict); an unacknowledged incoming summary is
re-sent by the broker (persistent session).
"""

import gc
from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

from qis_device import board
from qis_device.mqtt import MQTTClient


class Link:
    def __init__(self, cfg, topics, make_status, on_message, client=None):
        broker = cfg["broker"]
        self.cfg = cfg
        self.topics = topics  # dict kind -> topic
        self.make_status = make_status  # make_status(state) -> frame bytes
        self.client = client or MQTTClient(
            cfg["client_id"], broker["host"], broker["port"], broker["user"], broker["password"],
            broker["keepalive_s"], broker["tls"], cfg["mqtt_timeout_s"], True, cfg.get("buf"))
        self.client.set_callback(on_message)
        self.up = False
        self.min_ms = cfg["reconnect_min_ms"]
        self.backoff_ms = self.min_ms
        self.next_try = ticks_ms()
        self.ping_at = None  # ticks of an unanswered PINGREQ
        self.feed = None  # watchdog feed, set by the app
        self.connects = 0
        self.failures = 0
        self.session_present = False
        self.stats = {"mem_errors": 0}  # the app puts its own stats dict here

    def down(self, exc):
        """Close the socket and schedule the next attempt with exponential backoff plus jitter."""
        self.client.close()
        self.ping_at = None
        if isinstance(exc, MemoryError):
            self.stats["mem_errors"] += 1
            gc.collect()
        jitter = ticks_ms() % (self.backoff_ms // 4 + 1)
        self.next_try = ticks_add(ticks_ms(), self.backoff_ms + jitter)
        board.log("%s: %r; next attempt in %d ms" % ("link down" if self.up else "connect failed", exc,
                                                      self.backoff_ms + jitter))
        self.up = False
        self.backoff_ms = min(self.backoff_ms * 2, self.cfg["reconnect_max_ms"])

    def connect(self):
        """One connection attempt; True when up (subscribed and the retained `online` status published).
        WiFi and TCP come first: only with an open socket is the set-up code (qis_device.mqttsetup)
        loaded, for CONNECT and the subscriptions, and unloaded right after."""
        c = self.client
        try:
            if self.cfg["wifi"] and not board.UNIX:
                from qis_device.wifi import wifi_connect, wifi_ok

                wifi = self.cfg["wifi"]
                if not wifi_ok(wifi) and not wifi_connect(wifi, self.cfg["wifi_timeout_s"], self.feed):
                    raise OSError(-1, "wifi down")  # retried with the link's backoff; readings go on
            c.close()
            c.sock = c._open()
        except (OSError, MemoryError) as exc:
            self.failures += 1
            self.down(exc)
            return False
        open_session = None
        try:
            from qis_device.mqttsetup import open_session

            ok = open_session(self)
        except MemoryError as exc:
            ok = False
            self.failures += 1
            self.down(exc)
        finally:
            open_session = None
            board.unload("qis_device.mqttsetup")
        if not ok:
            return False
        try:
            c.publish(self.topics["status"], self.make_status("online"), True, 1)
        except (OSError, MemoryError) as exc:
            self.failures += 1
            self.down(exc)
            return False
        self.up = True
        self.connects += 1
        self.backoff_ms = self.min_ms
        board.log("link up (%s:%d, session present %s)" % (c.server, c.port, self.session_present))
        return True

    def publish(self, kind, frame):
        """QoS-1 publish, True once the broker acknowledged it; False (link down) otherwise."""
        if not self.up:
            return False
        try:
            self.client.publish(self.topics[kind], frame, qos=1)
            return True
        except (OSError, MemoryError) as exc:
            self.down(exc)
            return False

    def service(self, timeout_ms):
        """Reconnect when due, keep the connection alive, handle incoming packets; at most ~timeout_ms."""
        now = ticks_ms()
        if not self.up:
            wait = ticks_diff(self.next_try, now)
            if wait > 0:
                sleep_ms(min(wait, timeout_ms))
                return
            self.connect()
            return
        c = self.client
        keep_ms = self.cfg["broker"]["keepalive_s"] * 1000
        try:
            if self.ping_at is not None:
                if ticks_diff(c.last_rx, self.ping_at) >= 0:
                    self.ping_at = None
                elif ticks_diff(now, self.ping_at) > self.cfg["mqtt_timeout_s"] * 1000:
                    raise OSError(110, "no PINGRESP within the socket timeout")
            if keep_ms and self.ping_at is None and ticks_diff(now, c.last_tx) >= keep_ms // 2:
                c.ping()
                self.ping_at = ticks_ms()
            if keep_ms:
                timeout_ms = min(timeout_ms, max(10, keep_ms // 2 - ticks_diff(ticks_ms(), c.last_tx)))
            c.wait_msg(max(0, timeout_ms))
        except (OSError, MemoryError) as exc:
            self.down(exc)

    def close(self):
        """Say goodbye: `offline` status ourselves (a clean DISCONNECT suppresses the will), then disconnect."""
        if self.up:
            try:
                self.client.publish(self.topics["status"], self.make_status("offline"), True, 1)
                self.client.disconnect()
            except (OSError, MemoryError):
                pass
        self.client.close()
        self.up = False
