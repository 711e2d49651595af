"""A small MQTT 3.1.1 client for boards: the core layer (connect, publish, subscribe, read packets).

The API follows micropython-lib's umqtt.simple (MQTTClient(client_id, server, port, user, password,
keepalive, ssl), set_callback, set_last_will, connect, publish, subscribe, wait_msg, check_msg, ping,
disconnect) so a umqtt user recognises it, but it avoids the defects measured against Mosquitto
(docs/device.md, the MQTT client):

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
- incoming QoS-1 PUBLISHes are acknowledged after the callback returns; a payload the heap has no
  room for is read through the packet buffer and skipped, and the callback gets msg=None (a board
  after a reconnect would otherwise fail on the same re-sent message at every connect).

Every network failure is an OSError (MQTTError is one), so callers catch one type. Module name
`qis_device.mqtt`: nothing frozen into any firmware shadows it (ESP32 freezes its own `umqtt`).
"""

from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

_BUF_BYTES = const(512)  # fp frames are ~300 bytes; grows (once) for a bigger packet
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)


class MQTTError(OSError):
    pass


class MQTTClient:
    sock_class = None  # socket.socket by default; tests put a socket subclass here to watch the calls

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 timeout_s=5, nodelay=True, buf=None):
        self.client_id = client_id
        self.server = server
        self.ssl = ssl  # None/False, True (default context) or an ssl.SSLContext
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.timeout_s = timeout_s
        self.nodelay = nodelay
        self.sock = None  # what packets are read from and written to: the TCP socket, or TLS over it
        self.raw = None  # the TCP socket: timeouts are set here (MicroPython's SSLSocket has no settimeout)
        self.cb = None
        self.pid = 0
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self.last_tx = 0  # ticks_ms of the last packet written (keepalive, MQTT-3.1.2-23)
        self.last_rx = 0
        self.pings = 0
        self._buf = buf or bytearray(_BUF_BYTES)  # a board allocates it first, before the heap fragments
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
        self.raw.settimeout(self.timeout_s)
        written = sock.write(self._mv[:n])
        if written is not None and written != n:
            raise MQTTError(-1, "short write")
        self.last_tx = ticks_ms()

    # --- reading: the timeout is re-applied before every read (never setblocking) ---

    def _read(self, n):
        sock = self.sock
        if sock is None:
            raise MQTTError(-1, "not connected")
        self.raw.settimeout(self.timeout_s)
        data = sock.read(n)
        if not data or len(data) != n:
            raise MQTTError(-1, "connection closed by broker")
        return data

    # --- connection ---

    def set_callback(self, f):
        """f(topic: bytes, msg: bytes | None) is called for every PUBLISH received (None: no RAM for it)."""
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not topic:
            raise ValueError("last will needs a topic")
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    def _open(self):
        """Open the TCP (and TLS) socket with the timeout set and TCP_NODELAY. Resident, unlike the rest of
        the set-up: while the broker is unreachable a connect attempt fails here, without loading
        qis_device.mqttsetup (loading and dropping it every backoff period would fragment the heap)."""
        import socket

        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        sock = self.raw = (self.sock_class or socket.socket)()
        try:
            sock.settimeout(self.timeout_s)
            if self.nodelay:
                try:
                    sock.setsockopt(6, 1, 1)  # TCP_NODELAY: the unix port has no constant for it
                except (OSError, TypeError):
                    pass
            sock.connect(addr)
            if self.ssl:
                from qis_device.mqttsetup import wrap_tls

                sock = wrap_tls(self, sock)
        except BaseException:
            sock.close()
            self.raw = None
            raise
        return sock

    def connect(self, clean_session=True):
        """Connect and return the Session Present flag (bool). Raises OSError/MQTTError on failure.

        The CONNECT code lives in qis_device.mqttsetup, loaded for each (re)connect only.
        """
        from qis_device.mqttsetup import connect

        return connect(self, clean_session)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.raw = None
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

    def publish(self, topic, msg, retain=False, qos=0):
        """Publish; with qos=1 wait (up to timeout_s) for the PUBACK, handling other packets meanwhile."""
        topic = _b(topic)
        rem = 2 + len(topic) + len(msg) + (2 if qos else 0)
        i = self._begin(_PUBLISH | qos << 1 | (1 if retain else 0), rem)
        i = self._put_str(i, topic)
        pid = 0
        if qos:
            pid = self.pid = self.pid % 65535 + 1
            self._buf[i] = pid >> 8
            self._buf[i + 1] = pid & 0xFF
            i += 2
        n = i + len(msg)
        self._buf[i:n] = msg
        self._send(n)
        if qos:
            self._await(_PUBACK, pid)
        return pid

    def subscribe(self, topic, qos=0):
        from qis_device.mqttsetup import subscribe

        return subscribe(self, topic, qos)

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
        """Read and handle one packet, waiting up to timeout_ms (None: the socket timeout; 0: poll,
        umqtt's check_msg). Returns None when nothing arrived, else (type, packet id, extra)."""
        if self.sock is None:
            raise MQTTError(-1, "not connected")
        if not self._poll.poll(int(self.timeout_s * 1000) if timeout_ms is None else timeout_ms):
            return None
        first = self._read(1)[0]
        size = shift = 0
        while True:  # remaining length (MQTT-2.2.3): 7 bits per byte, at most 4 bytes
            b = self._read(1)[0]
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 21:
                raise MQTTError(-1, "bad remaining length")
        self.last_rx = ticks_ms()
        kind = first & 0xF0
        if kind != _PUBLISH:
            body = self._read(size) if size else b""
            if kind in (_PUBACK, _SUBACK) and size >= 2:
                return (kind, body[0] << 8 | body[1], body[2] if size > 2 else 0)
            return (kind, 0, None)  # PINGRESP, UNSUBACK, ...: nothing to do
        topic = self._read(2)
        topic = self._read(topic[0] << 8 | topic[1])
        size -= len(topic) + 2
        qbits = first & 0x06  # 0x02 = QoS 1
        if qbits:
            pid = self._read(2)
            size -= 2
        try:
            msg = self._read(size) if size > 0 else b""
        except MemoryError:  # no room for the payload: skip it through our buffer, the stream stays in step
            msg = None  # the callback is told (None) and the message is acknowledged: dropped, not re-sent
            while size > 0:
                self.raw.settimeout(self.timeout_s)
                got = self.sock.readinto(self._mv[:min(size, len(self._buf))])
                if not got:
                    raise MQTTError(-1, "connection closed by broker")
                size -= got
        if self.cb is not None:
            self.cb(topic, msg)
        if qbits == 0x02:
            buf = self._buf  # PUBACK after the callback: the message was handled
            buf[0] = _PUBACK
            buf[1] = 2
            buf[2] = pid[0]
            buf[3] = pid[1]
            self._send(4)
        elif qbits:
            raise MQTTError(-1, "QoS 2 is not supported")
        return (_PUBLISH, 0, None)


def _b(value):
    return value.encode() if isinstance(value, str) else value
