"""Connection set-up: TLS, CONNECT/CONNACK, SUBSCRIBE (for qis_device.mqtt), and the link's session:
last will, CONNECT, resubscribe. The link opens the socket (WiFi, TCP) before it loads this module and
publishes `online` after it has unloaded it.

Loaded per (re)connect and unloaded by the link afterwards, so the running board does not hold this
code (RAM discipline, design rule 7: ~2.2 KB of heap on the 64-bit unix port, .mpy). Functions take the
client or the link as their first argument.
"""

import select
from time import ticks_ms

from micropython import const

from qis_device.mqtt import MQTTError, _b

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)


def wrap_tls(c, sock):
    """TLS over the connected socket: c.ssl is True (default context, unverified) or an ssl.SSLContext."""
    import ssl

    ctx = c.ssl
    if ctx is True:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname=c.server)


def connect(c, clean_session=True):
    """Connect and return the Session Present flag (bool). Raises OSError/MQTTError on failure."""
    c.close()
    c.sock = c._open()
    return handshake(c, clean_session)


def handshake(c, clean_session=True):
    """CONNECT/CONNACK over the open socket c.sock; returns the Session Present flag."""
    c._poll = select.poll()
    c._poll.register(c.sock, select.POLLIN)
    cid = c.client_id.encode() if isinstance(c.client_id, str) else c.client_id
    flags = 0x02 if clean_session else 0
    rem = 10 + 2 + len(cid)
    if c.lw_topic:
        lw_topic = _b(c.lw_topic)
        lw_msg = _b(c.lw_msg)
        rem += 4 + len(lw_topic) + len(lw_msg)
        flags |= 0x04 | (c.lw_qos & 1) << 3 | (0x20 if c.lw_retain else 0)
    if c.user:
        user = _b(c.user)
        rem += 2 + len(user)
        flags |= 0x80
        if c.pswd is not None:
            pswd = _b(c.pswd)
            rem += 2 + len(pswd)
            flags |= 0x40
    i = c._begin(_CONNECT, rem)
    i = c._put_str(i, b"MQTT")
    buf = c._buf
    buf[i] = 4  # protocol level 4 = MQTT 3.1.1
    buf[i + 1] = flags
    buf[i + 2] = c.keepalive >> 8
    buf[i + 3] = c.keepalive & 0xFF
    i = c._put_str(i + 4, cid)
    if c.lw_topic:
        i = c._put_str(i, lw_topic)
        i = c._put_str(i, lw_msg)
    if flags & 0x80:
        i = c._put_str(i, user)
        if flags & 0x40:
            i = c._put_str(i, pswd)
    c._send(i)
    resp = c._read(4)
    if resp[0] != _CONNACK or resp[1] != 2:
        raise MQTTError(-1, "bad CONNACK %r" % (resp,))
    if resp[3] != 0:
        raise MQTTError(resp[3], "connection refused, CONNACK code %d" % resp[3])
    c.last_rx = ticks_ms()
    # MQTT-3.2.2-2: bit 0 of the acknowledge flags is Session Present; the other bits are reserved.
    return bool(resp[2] & 1)


def subscribe(c, topic, qos=0):
    topic = _b(topic)
    pid = c.pid = c.pid % 65535 + 1
    i = c._begin(_SUBSCRIBE, 2 + 2 + len(topic) + 1)
    c._buf[i] = pid >> 8
    c._buf[i + 1] = pid & 0xFF
    i = c._put_str(i + 2, topic)
    c._buf[i] = qos
    c._send(i + 1)
    granted = c._await(_SUBACK, pid)
    if granted == 0x80:
        raise MQTTError(-1, "subscription refused")
    return granted


# --- the link's session (qis_device.link.Link.connect / close) ---


def open_session(link):
    """Will, CONNECT and subscriptions over the socket the link has just opened; True when they
    succeeded (the link then publishes `online` itself, after this module is unloaded)."""
    c = link.client
    try:
        c.set_last_will(link.topics["status"], link.make_status("offline"), retain=True, qos=1)
        link.session_present = handshake(c, link.cfg["clean_session"])
        c.lw_topic = c.lw_msg = None  # sent; set afresh before every connect, not kept between them (heap)
        # summary last: the broker sends its retained summary after that SUBACK, so the summary is read
        # (and verified) after this module has been unloaded, not on top of it (start-up heap peak)
        c.subscribe(link.topics["error"], 1)
        c.subscribe(link.topics["summary"], 1)
    except OSError as exc:
        link.failures += 1
        link.down(exc)
        return False
    return True
