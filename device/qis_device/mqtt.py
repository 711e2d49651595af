"""A small MQTT 3.1.1 client for boards: the core layer (connect, publish, subscribe, read packets).

The API follows micropython-lib's umqtt.simple (MQTTClient(client_id, server, port, user, password,
keepalive, ssl), set_callback, set_last_will, connect, publish, subscribe, wait_msg, check_msg, ping,
disconnect) so a umqtt user recognises it, but it avoids the defects measured against Mosquitto
(research/micropython-device.md section 1):

- every packet leaves in ONE write from a buffer allocated once (umqtt.simple writes 5 pieces and
  Nagle stalls each QoS-1 publish ~44 ms), and TCP_NODELAY is set with setsockopt(6, 1, 1);
- the socket is never switched to blocking mode: the timeout is re-applied before every read and
  check_msg/wait_msg wait with select.poll (umqtt's wait_msg calls setblocking(True), which on
  ESP32/lwIP turns the timeout off, so boards hang where the unix port does not);
- a QoS-1 publish waits for its PUBACK with a deadline and raises OSError when it does not come, so
  the policy layer (link.py) can reconnect and publish the same frame again (umqtt.robust keeps
  reading a new socket for a PUBACK that never comes);
- CONNACK's Session Present flag (MQTT-3.2.2-2) is masked, not rejected (mqtt_as cannot reconnect
  with clean=False because of that);
- incoming QoS-1 PUBLISHes are acknowledged after the callback returns.

Every network failure is an OSError (MQTTError is one), so callers catch one type. Module name
`qis_device.mqtt`: nothing frozen into any firmware shadows it (ESP32 freezes its own `umqtt`).
"""

import select
import socket
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

_BUF_BYTES = const(1280)  # >= MAX_FRAME_BYTES (1024) + the longest topic + header
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)


class MQTTError(OSError):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 timeout_s=5, nodelay=True):
        self.client_id = client_id
        self.server = server
        self.ssl = ssl  # None/False, True (default context) or an ssl.SSLContext
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.timeout_s = timeout_s
        self.nodelay = nodelay
        self.sock = None
        self.cb = None
        self.pid = 0
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self.last_tx = 0  # ticks_ms of the last packet written (keepalive, MQTT-3.1.2-23)
        self.last_rx = 0
        self.writes = 0  # socket writes issued (tests check: one per packet)
        self.pings = 0
        self._buf = bytearray(_BUF_BYTES)
        self._mv = memoryview(self._buf)
        self._poll = None

    # --- packet assembly: everything goes into self._buf, then one write ---

    def _begin(self, first, remaining):
        buf = self._buf
        if remaining + 5 > len(buf):
            buf = self._buf = bytearray(remaining + 5)  # rare: grows once, kept
            self._mv = memoryview(buf)
        buf[0] = first
        i = 1
        while True:
            b = remaining & 0x7F
            remaining >>= 7
            buf[i] = b | 0x80 if remaining else b
            i += 1
            if not remaining:
                return i

    def _put(self, i, data):
        n = len(data)
        self._buf[i:i + n] = data
        return i + n

    def _put_str(self, i, data):
        n = len(data)
        buf = self._buf
        buf[i] = n >> 8
        buf[i + 1] = n & 0xFF
        buf[i + 2:i + 2 + n] = data
        return i + 2 + n

    def _send(self, n):
        sock = self.sock
        if sock is None:
            raise MQTTError(-1, "not connected")
        sock.settimeout(self.timeout_s)
        written = sock.write(self._mv[:n])
        self.writes += 1
        if written is not None and written != n:
            raise MQTTError(-1, "short write %d of %d" % (written, n))
        self.last_tx = ticks_ms()

    # --- reading: the timeout is re-applied before every read (never setblocking) ---

    def _read(self, n):
        sock = self.sock
        if sock is None:
            raise MQTTError(-1, "not connected")
        sock.settimeout(self.timeout_s)
        data = sock.read(n)
        if not data or len(data) != n:
            raise MQTTError(-1, "connection closed by broker")
        return data

    def _read_len(self):
        n = 0
        shift = 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 21:
                raise MQTTError(-1, "bad remaining length")

    # --- connection ---

    def set_callback(self, f):
        """f(topic: bytes, msg: bytes) is called for every PUBLISH received."""
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not topic:
            raise ValueError("last will needs a topic")
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    def _open(self):
        """Open the TCP (and TLS) socket; tests override this to wrap the socket."""
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        sock = socket.socket()
        try:
            sock.settimeout(self.timeout_s)
            if self.nodelay:
                try:
                    sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (no constant on the unix port)
                except (OSError, TypeError):
                    pass
            sock.connect(addr)
            if self.ssl:
                sock = self._wrap_tls(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _wrap_tls(self, sock):
        import ssl as _ssl  # lazy: TLS costs RAM only when configured

        ctx = self.ssl
        if ctx is True:
            ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = _ssl.CERT_NONE
        return ctx.wrap_socket(sock, server_hostname=self.server)

    def connect(self, clean_session=True):
        """Connect and return the Session Present flag (bool). Raises OSError/MQTTError on failure."""
        self.close()
        self.sock = self._open()
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        cid = self.client_id.encode() if isinstance(self.client_id, str) else self.client_id
        flags = 0x02 if clean_session else 0
        rem = 10 + 2 + len(cid)
        if self.lw_topic:
            lw_topic = _b(self.lw_topic)
            lw_msg = _b(self.lw_msg)
            rem += 4 + len(lw_topic) + len(lw_msg)
            flags |= 0x04 | (self.lw_qos & 1) << 3 | (0x20 if self.lw_retain else 0)
        if self.user:
            user = _b(self.user)
            rem += 2 + len(user)
            flags |= 0x80
            if self.pswd is not None:
                pswd = _b(self.pswd)
                rem += 2 + len(pswd)
                flags |= 0x40
        i = self._begin(_CONNECT, rem)
        i = self._put_str(i, b"MQTT")
        buf = self._buf
        buf[i] = 4  # protocol level 4 = MQTT 3.1.1
        buf[i + 1] = flags
        buf[i + 2] = self.keepalive >> 8
        buf[i + 3] = self.keepalive & 0xFF
        i = self._put_str(i + 4, cid)
        if self.lw_topic:
            i = self._put_str(i, lw_topic)
            i = self._put_str(i, lw_msg)
        if flags & 0x80:
            i = self._put_str(i, user)
            if flags & 0x40:
                i = self._put_str(i, pswd)
        self._send(i)
        resp = self._read(4)
        if resp[0] != _CONNACK or resp[1] != 2:
            raise MQTTError(-1, "bad CONNACK %r" % (resp,))
        if resp[3] != 0:
            raise MQTTError(resp[3], "broker refused the connection (CONNACK code %d)" % resp[3])
        self.last_rx = ticks_ms()
        # MQTT-3.2.2-2: bit 0 of the acknowledge flags is Session Present; the other bits are reserved.
        return bool(resp[2] & 1)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._poll = None

    def disconnect(self):
        """Clean DISCONNECT: the broker discards the last will."""
        try:
            self._buf[0] = 0xE0
            self._buf[1] = 0
            self._send(2)
        finally:
            self.close()

    def ping(self):
        self._buf[0] = _PINGREQ
        self._buf[1] = 0
        self._send(2)
        self.pings += 1

    def _next_pid(self):
        self.pid = self.pid + 1 if self.pid < 65535 else 1
        return self.pid

    def publish(self, topic, msg, retain=False, qos=0):
        """Publish; with qos=1 wait (up to timeout_s) for the PUBACK, handling other packets meanwhile."""
        topic = _b(topic)
        rem = 2 + len(topic) + len(msg) + (2 if qos else 0)
        i = self._begin(_PUBLISH | qos << 1 | (1 if retain else 0), rem)
        i = self._put_str(i, topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            self._buf[i] = pid >> 8
            self._buf[i + 1] = pid & 0xFF
            i += 2
        i = self._put(i, msg)
        self._send(i)
        if qos:
            self._await(_PUBACK, pid)
        return pid

    def subscribe(self, topic, qos=0):
        topic = _b(topic)
        pid = self._next_pid()
        i = self._begin(_SUBSCRIBE, 2 + 2 + len(topic) + 1)
        self._buf[i] = pid >> 8
        self._buf[i + 1] = pid & 0xFF
        i = self._put_str(i + 2, topic)
        self._buf[i] = qos
        self._send(i + 1)
        granted = self._await(_SUBACK, pid)
        if granted == 0x80:
            raise MQTTError(-1, "broker refused the subscription to %s" % topic)
        return granted

    def _await(self, op, pid):
        deadline = ticks_add(ticks_ms(), int(self.timeout_s * 1000))
        while True:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                raise MQTTError(110, "no %s for packet %d within %s s" % (
                    "PUBACK" if op == _PUBACK else "SUBACK", pid, self.timeout_s))
            got = self.wait_msg(left)
            if got is not None and got[0] == op and got[1] == pid:
                return got[2]

    # --- incoming packets ---

    def wait_msg(self, timeout_ms=None):
        """Read and handle one packet, waiting up to timeout_ms (None: the socket timeout).

        Returns None when nothing arrived, else (type, packet id, extra) for acks and pings.
        """
        if self.sock is None:
            raise MQTTError(-1, "not connected")
        if timeout_ms is None:
            timeout_ms = int(self.timeout_s * 1000)
        events = self._poll.poll(timeout_ms)
        if not events:
            return None
        if events[0][1] & (select.POLLHUP | select.POLLERR):
            # readable hang-up: read() below returns b"" and raises
            pass
        first = self._read(1)[0]
        size = self._read_len()
        self.last_rx = ticks_ms()
        kind = first & 0xF0
        if kind == _PUBLISH:
            self._on_publish(first, size)
            return (_PUBLISH, 0, None)
        body = self._read(size) if size else b""
        if kind in (_PUBACK, _SUBACK):
            if size < 2:
                raise MQTTError(-1, "short ack")
            return (kind, body[0] << 8 | body[1], body[2] if kind == _SUBACK and size > 2 else 0)
        return (kind, 0, None)  # PINGRESP, UNSUBACK, ...: nothing to do

    def _on_publish(self, first, size):
        tlen = self._read(2)
        tlen = tlen[0] << 8 | tlen[1]
        topic = self._read(tlen)
        size -= tlen + 2
        pid = 0
        if first & 0x06:
            p = self._read(2)
            pid = p[0] << 8 | p[1]
            size -= 2
        msg = self._read(size) if size > 0 else b""
        if self.cb is not None:
            self.cb(topic, msg)
        if first & 0x06 == 0x02:
            buf = self._buf
            buf[0] = _PUBACK
            buf[1] = 2
            buf[2] = pid >> 8
            buf[3] = pid & 0xFF
            self._send(4)
        elif first & 0x06 == 0x04:
            raise MQTTError(-1, "QoS 2 is not supported")

    def check_msg(self):
        """Handle a packet if one is waiting; never blocks (poll with timeout 0, the socket stays timed)."""
        return self.wait_msg(0)


def _b(value):
    return value.encode() if isinstance(value, str) else value
