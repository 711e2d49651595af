"""The only paho-mqtt adapter: a persistent-session, manual-ack MQTT client feeding an asyncio queue.

How it works: paho 2.x runs its network loop on its own thread (`loop_start`), which also reconnects
for ever with a doubling delay (`reconnect_delay_set`), including when the very first connection fails.
The session is persistent -- a fixed client id with clean_session=False (MQTT 3.1.1, MQTT-3.1.2-4) or
clean_start=False plus a Session Expiry Interval (MQTT 5, 3.1.2.11.2) -- so QoS 1 messages the broker
queued while the gateway was away are delivered when it returns. `manual_ack=True` stops paho from
sending PUBACK on receipt: the bridge calls `ack(msg)` only after the message was durably handled, so a
gateway killed in between gets the message again (MQTT-4.3.2: the broker resends unacknowledged QoS 1
messages when the session resumes). Subscriptions are (re)made in on_connect, so an expired session
heals too.

Outgoing packets (PUBACKs, summaries) queued together leave in one send, and only the first of them
wakes paho's thread (`_PahoClient._packet_queue` / `_packet_write`): paho does a system call for each
wake-up and each packet. The two packets every reading brings in -- the board's QoS 1 PUBLISH and the
broker's PUBACK for its summary -- are decoded by `_PahoClient` itself when they carry no MQTT 5
properties or reason code (paho built several objects per packet for them); anything else is paho's.

Every socket paho opens gets TCP_NODELAY (on_socket_open, before CONNECT): without it Nagle holds a
summary or PUBACK back until the previous segment is acknowledged, tens of ms per answer at low load.

paho's callbacks run on paho's thread; an incoming message is appended to a list shared with the event
loop, and the loop is woken (`call_soon_threadsafe`) only when that list was empty: one wake-up per
batch, not per message (each wake-up is a Handle, a self-pipe write and a GIL hand-over). The loop reads
them with `await next_message()` / `next_batch()`. That backlog is bounded
(`max_queued` messages, `max_queued_bytes`): a QoS 0 message beyond it is dropped and counted (`dropped`,
`on_drop`), so a flood cannot grow the process; QoS 1 messages are never dropped here. They were meant
to be bounded by the broker's in-flight window, none being PUBACKed before it was handled (MQTT 5: our
Receive Maximum, `max_queued`; 3.1.1: the broker's max_inflight_messages), but Mosquitto 2.0.11 sends
a whole further window for every PUBACK (Receive Maximum 10: 10 unacknowledged, 20 after one PUBACK,
30 after two), so under overload this backlog reached 10,000 frames. `publish` and `ack` are
thread-safe in paho and are called from the loop. paho's errors are translated to MqttError here.

Exceptions::

    ConnectionError
     └── MqttError   the broker refused us or a publish could not be queued
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from qis_gateway.config import MqttSettings

log = logging.getLogger(__name__)


class MqttError(ConnectionError):
    pass


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    received_s: float  # time.perf_counter() on arrival


class _ReadAhead:
    """A TCP socket whose reads fetch up to 64 KiB at once and serve paho's small reads from that.

    paho reads a packet in three or more recv calls (type byte, length bytes, body); each is a system
    call that drops the GIL, and taking it back from a busy event loop costs up to the switch interval.
    `pending()` is what paho asks of TLS sockets: while bytes are buffered it reads on without select."""

    __slots__ = ("_sock", "_buf")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def recv(self, n: int) -> bytes:
        if not self._buf:
            data = self._sock.recv(max(n, 65536))
            if len(data) <= n:
                return data
            self._buf += data
        out = bytes(self._buf[:n])
        del self._buf[:n]  # cheap: CPython moves a bytearray's start instead of copying
        return out

    def pending(self) -> int:
        return len(self._buf)

    def __getattr__(self, name: str) -> object:  # send, setblocking, fileno, setsockopt, close ...
        return getattr(self._sock, name)


_PUBACK_OK = ReasonCode(PacketTypes.PUBACK)  # 0: success
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)
COALESCE_MAX = 256  # queued packets written with one send (PUBACKs ~4 bytes, summaries ~300)


def _plain(packet: dict[str, object]) -> bool:
    """A queued packet paho does nothing with once written: neither a QoS 0 PUBLISH (on_publish) nor
    DISCONNECT (closes the socket)."""
    command = packet["command"] & 0xF0  # type: ignore[operator]
    return command != paho.DISCONNECT and not (command == paho.PUBLISH and packet["qos"] == 0)


class _Received:
    """What on_message reads of an incoming PUBLISH taken by `_PahoClient._handle_publish`'s fast path.
    paho's MQTTMessage would also build a MQTTMessageInfo (with a threading.Condition) that an incoming
    message never uses, and decode_publish an empty Properties object."""

    __slots__ = ("_topic", "payload", "qos", "mid", "retain", "dup", "timestamp")

    def __init__(self, topic: bytes, payload: bytes, mid: int, retain: bool, dup: bool, timestamp: float) -> None:
        self._topic, self.payload, self.qos, self.mid = topic, payload, 1, mid
        self.retain, self.dup, self.timestamp = retain, dup, timestamp

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")  # UnicodeDecodeError as paho's MQTTMessage.topic


class _PahoClient(paho.Client):
    def _create_socket(self) -> object:  # type: ignore[override]
        sock = super()._create_socket()
        # only a plain TCP socket: TLS and websocket wrappers buffer (or frame) on their own
        return _ReadAhead(sock) if type(sock) is socket.socket else sock

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: paho.MQTTMessageInfo | None = None) -> paho.MQTTErrorCode:
        # paho writes a wake-up byte to its socket pair for every packet queued: a system call per
        # PUBACK and per summary, each waking paho's thread to send that one packet. Only the packet
        # that made the queue non-empty needs it: paho's thread then writes the whole queue
        # (_packet_write pops until empty) and selects for writing while any is left (want_write), so
        # a packet queued behind another is sent with it. The length is read after the append, so a
        # packet its thread might miss (it emptied the queue in between) finds it empty and wakes it.
        if self._thread is None:  # no network thread (not the gateway's case): paho's own path
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet),
                                 "packet": packet, "info": info})
        if len(self._out_packet) == 1 and self._sockpairW is not None:
            try:
                self._sockpairW.send(b"0")
            except BlockingIOError:
                pass
        self._call_socket_register_write()
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> paho.MQTTErrorCode:
        # paho sends each queued packet with its own send(): a system call (and a GIL hand-over) per
        # PUBACK and summary. The queued packets paho does nothing with once written (all but QoS 0
        # PUBLISH and DISCONNECT, see paho's _packet_write) go out together in one send.
        out = self._out_packet
        while len(out) > 1 and _plain(out[0]) and _plain(out[1]):
            run = [out.popleft()]
            while out and len(run) < COALESCE_MAX and _plain(out[0]):
                run.append(out.popleft())
            try:
                sent = self._sock_send(b"".join(p["packet"][p["pos"]:] for p in run))
            except (AttributeError, ValueError):  # no socket (paho's handling)
                out.extendleft(reversed(run))
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(run))
                return paho.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(run))
                self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST
            with self._msgtime_mutex:
                self._last_msg_out = paho.time_func()
            left = []
            for p in run:  # a partial send: the first packet not fully written and those after it stay
                step = min(sent, p["to_process"])
                p["pos"] += step
                p["to_process"] -= step
                sent -= step
                if p["to_process"]:
                    left.append(p)
            if left:
                out.extendleft(reversed(left))
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS  # want_write: the next select waits for room
        return super()._packet_write()

    def _handle_pubackcomp(self, cmd: str) -> paho.MQTTErrorCode:  # type: ignore[override]
        # The broker's PUBACK for each summary: paho decodes every one into a new ReasonCode and
        # Properties object (~11% of the MQTT thread's samples in bench/experiments/mqtt_cpu.py). A
        # 2-byte PUBACK is only a packet id: success, no properties (MQTT 5 3.4.2.1 omits both; 3.1.1 has
        # neither). With no on_publish to receive them, shared placeholders serve; the rest is paho's.
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2 or self.on_publish is not None:
            return super()._handle_pubackcomp(cmd)  # type: ignore[arg-type]
        mid = packet[0] << 8 | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> paho.MQTTErrorCode:
        # Every board frame: paho decodes it with struct format strings built per packet, an empty
        # Properties object (MQTT 5) and a MQTTMessage with its own MQTTMessageInfo and Condition. The
        # gateway's own case -- QoS 1 acknowledged by the gateway (manual_ack), a topic, no properties --
        # is decoded here; anything else (QoS 0/2, properties such as a topic alias) is paho's.
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        v5 = 1 if self._protocol == paho.MQTTv5 else 0
        end = 2 + (packet[0] << 8 | packet[1]) if len(packet) >= 2 else 0
        if (header & 0x06) != 0x02 or not self._manual_ack or end <= 2 or len(packet) < end + 2 + v5 \
                or (v5 and packet[end + 2] != 0):
            return super()._handle_publish()
        message = _Received(bytes(packet[2:end]), bytes(packet[end + 2 + v5:]), packet[end] << 8 | packet[end + 1],
                            bool(header & 0x01), bool(header & 0x08), paho.time_func())
        self._handle_on_message(message)  # type: ignore[arg-type]
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def message_callback_add(self, sub: str, callback: object) -> None:  # type: ignore[override]
        raise NotImplementedError("the gateway's client has one on_message (_handle_on_message relies on it)")

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # paho first matches every message's topic against its per-filter callbacks with a recursive
        # generator, ~7 us a message when there are none (timeit); this client registers none.
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise


class MqttClient:
    def __init__(self, settings: MqttSettings, subscriptions: tuple[tuple[str, int], ...] = (),
                 on_connect: Callable[[bool], None] | None = None,
                 will: tuple[str, bytes, int, bool] | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        """`will`: (topic, payload, qos, retain) the broker publishes if this client dies; `on_drop`: a
        QoS 0 message was dropped because the incoming queue was full."""
        self.settings = settings
        self.subscriptions = subscriptions
        self._on_connect_cb = on_connect
        self._on_drop = on_drop
        v5 = settings.protocol == "5"
        self._v5 = v5
        self._client = _PahoClient(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id,
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311, manual_ack=True, reconnect_on_failure=True)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password or None)
        if settings.tls:
            self._client.tls_set()
        if will is not None:
            self._client.will_set(*will)
        self._client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
        # No cap on our own publishes in flight: with one, paho holds the rest back and, on every PUBACK,
        # scans its message dict from the oldest for the next to send (3.2% of the gateway's samples at
        # offered 3,000 fps/s, mostly `busy` answers), and 100 in flight allowed 100 sends per broker
        # round trip. Mosquitto takes any number from a client (20,000 QoS 1 publishes, all acked).
        self._client.max_inflight_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._loop: asyncio.AbstractEventLoop | None = None
        self._incoming: list[Incoming] = []  # handed over, not yet taken (under _backlog_lock)
        self._arrived: asyncio.Event | None = None  # set by the loop when _incoming became non-empty
        self._connected = threading.Event()
        self._pending: list[paho.MQTTMessageInfo] = []
        self._prune_at = 1000
        self._backlog_lock = threading.Lock()
        self._backlog = 0  # messages handed to the loop and not yet taken, and their payload bytes
        self._backlog_bytes = 0
        self.dropped = 0  # QoS 0 messages dropped because the backlog was full
        self.connects = 0
        self.last_error = ""
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (and keep reconnecting); call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        s = self.settings
        props = None
        kwargs = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry_s
            # Mosquitto sends a 3.1.1 client at most max_inflight_messages (20 in our broker config)
            # unacknowledged QoS 1 messages and queues the rest, unseen and unmeasured. A v5 client
            # names its own window: as many as our backlog may hold, so under overload the wait
            # happens here, where AnswerQueue measures it and sheds, not at the broker.
            props.ReceiveMaximum = max(1, min(65535, s.max_queued))
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s, **kwargs)
        self._client.loop_start()
        log.info("MQTT %s client %r connecting to %s:%d (persistent session, manual ack)",
                 s.protocol, s.client_id, s.host, s.port)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for queued publishes to be acknowledged, then disconnect cleanly."""
        deadline = time.monotonic() + timeout_s
        while self._connected.is_set() and time.monotonic() < deadline and self._unpublished():
            await asyncio.sleep(0.02)
        self._stopping = True
        self._client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self._client.loop_stop)
        self._connected.clear()

    def _unpublished(self) -> int:
        self._pending = [m for m in self._pending if not self._published_or_failed(m)]
        # next prune when the list has doubled: a scan per publish once >1,000 were unacknowledged
        # (overload, boards slow to PUBACK) cost ~13% of the gateway's CPU
        self._prune_at = max(1000, 2 * len(self._pending))
        return len(self._pending)

    @staticmethod
    def _published_or_failed(info: paho.MQTTMessageInfo) -> bool:
        # paho raises from is_published() for a publish made while disconnected; such a message stays in
        # paho's session and goes out on reconnect, so waiting for it here would only stall shutdown.
        try:
            return info.is_published()
        except (RuntimeError, ValueError):
            return True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._connected.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- messages -------------------------------------------------------------------------------------
    async def next_message(self) -> Incoming:
        return (await self.next_batch(1))[0]

    async def next_batch(self, max_n: int) -> list[Incoming]:
        """The next message and every other one already waiting, up to max_n, in arrival order."""
        arrived = self._arrived
        if arrived is None:
            raise MqttError("start() was not called")
        while True:
            batch = self.take_nowait(max_n)
            if batch:
                return batch
            await arrived.wait()

    def take_nowait(self, max_n: int) -> list[Incoming]:
        """The messages already waiting, up to max_n, in arrival order; [] when there are none."""
        arrived = self._arrived
        if arrived is None:
            raise MqttError("start() was not called")
        with self._backlog_lock:
            batch = self._incoming[:max_n]
            if batch:
                del self._incoming[:max_n]
                self._backlog -= len(batch)
                self._backlog_bytes -= sum(len(m.payload) for m in batch)
            if not self._incoming:
                arrived.clear()  # under the lock: paho sets it again for the next arrival
            return batch

    @property
    def backlog(self) -> int:
        """Incoming messages waiting for the event loop."""
        return self._backlog

    def ack(self, msg: Incoming) -> None:
        """PUBACK a QoS 1 message (QoS 0 needs none)."""
        if msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish; QoS 1 publishes made while disconnected are sent after the reconnect."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError("publish to %s failed: %s" % (topic, paho.error_string(info.rc)))
        if qos > 0:
            self._pending.append(info)
            if len(self._pending) > self._prune_at:
                self._unpublished()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._client.subscribe(topic, qos)

    # -- paho callbacks (paho's thread) ----------------------------------------------------------------
    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: object, sock: object) -> None:
        # paho leaves Nagle on: a small summary or PUBACK then waits for the previous segment's ACK
        # (tens of ms on loopback with delayed ACKs). Called on every (re)connect, before CONNECT is sent.
        setsockopt = getattr(sock, "setsockopt", None)
        if setsockopt is not None:
            try:
                setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # not a TCP socket (e.g. a proxy wrapper): keep going, just slower
                log.debug("TCP_NODELAY not set: %s", exc)

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        if getattr(reason, "is_failure", False):
            self.last_error = str(reason)
            log.warning("broker refused the connection: %s", reason)
            return
        self.connects += 1
        present = bool(getattr(flags, "session_present", False))
        log.info("connected to the broker (session %s)", "resumed" if present else "new")
        if self.subscriptions:
            client.subscribe(list(self.subscriptions))
        self._connected.set()
        if self._on_connect_cb is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_connect_cb, present)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       properties: object) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        loop = self._loop
        if loop is None:
            return
        size = len(message.payload)
        s = self.settings
        with self._backlog_lock:
            if message.qos == 0 and (self._backlog >= s.max_queued or self._backlog_bytes + size > s.max_queued_bytes):
                self.dropped += 1
                full = True
            else:
                self._backlog += 1
                self._backlog_bytes += size
                full = False
        if full:  # a QoS 0 flood: drop it here, before it costs memory (QoS 0 promises no delivery)
            if self._on_drop is not None:
                self._on_drop()
            return
        item = Incoming(topic, bytes(message.payload), message.qos, message.mid, bool(message.retain),
                        bool(message.dup), time.perf_counter())
        with self._backlog_lock:
            self._incoming.append(item)
            wake = len(self._incoming) == 1  # the loop was told already if others are waiting
        if wake:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed during shutdown: the broker redelivers (not acked)
                pass

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
