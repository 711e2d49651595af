"""The gateway's paho client writes queued packets together and wakes paho's thread once per burst
(mqtt_client._PahoClient): same bytes, same order, partial sends resumed, QoS 0 callbacks kept; and it
completes a plain PUBACK without paho's decoding objects."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from qis_gateway.mqtt_client import _PahoClient


class _Sock:
    """Accepts `room[i]` bytes on the i-th send (all once `room` is used up); records what was sent."""

    def __init__(self, room: list[int] | None = None) -> None:
        self.room = list(room or [])
        self.sends: list[bytes] = []

    def send(self, buf: bytes) -> int:
        n = min(len(buf), self.room.pop(0)) if self.room else len(buf)
        self.sends.append(bytes(buf[:n]))
        return n

    def close(self) -> None:  # paho closes its socket when the client is collected
        pass


class _Pair:
    def __init__(self) -> None:
        self.wakes = 0

    def send(self, data: bytes) -> int:
        self.wakes += 1
        return len(data)

    def close(self) -> None:
        pass


def _client(sock: _Sock) -> tuple[_PahoClient, _Pair]:
    client = _PahoClient(CallbackAPIVersion.VERSION2, client_id="t-coalesce", protocol=paho.MQTTv311)
    client._sock = sock  # type: ignore[assignment]
    client._thread = threading.current_thread()  # as under loop_start: packets are queued for paho's thread
    pair = _Pair()
    client._sockpairW = pair  # type: ignore[assignment]
    return client, pair


def _queue(client: _PahoClient, packets: list[bytes], qos: int = 1) -> None:
    for i, data in enumerate(packets):
        client._packet_queue(paho.PUBACK if qos else paho.PUBLISH, data, i + 1, qos)


PACKETS = [b"\x40\x02\x00\x01", b"\x40\x02\x00\x02", b"\x32" + bytes(range(40)), b"\x40\x02\x00\x03"]


def test_queued_packets_go_out_in_one_send_after_one_wake() -> None:
    sock = _Sock()
    client, pair = _client(sock)
    _queue(client, PACKETS)
    assert pair.wakes == 1  # only the packet that made the queue non-empty woke paho's thread
    assert client._packet_write() == paho.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert sock.sends == [b"".join(PACKETS)]
    assert not client.want_write()
    _queue(client, PACKETS[:1])
    assert pair.wakes == 2  # the queue was empty again


def test_a_partial_send_resumes_where_it_stopped() -> None:
    sock = _Sock(room=[6, 3])
    client, _ = _client(sock)
    _queue(client, PACKETS)
    for _ in range(5):
        if not client.want_write():
            break
        client._packet_write()
    assert b"".join(sock.sends) == b"".join(PACKETS)
    assert [len(s) for s in sock.sends[:2]] == [6, 3]
    assert not client.want_write()


def test_a_blocked_socket_keeps_every_packet_queued() -> None:
    class Blocked(_Sock):
        def send(self, buf: bytes) -> int:
            raise BlockingIOError

    client, _ = _client(Blocked())
    _queue(client, PACKETS)
    assert client._packet_write() == paho.MQTTErrorCode.MQTT_ERR_AGAIN
    assert [p["packet"] for p in client._out_packet] == PACKETS


def test_qos0_publishes_still_reach_on_publish() -> None:
    sock = _Sock()
    client, _ = _client(sock)
    published: list[int] = []
    client.on_publish = lambda c, u, mid, rc, props: published.append(mid)
    infos = [paho.MQTTMessageInfo(i + 1) for i in range(2)]
    client._packet_queue(paho.PUBACK, PACKETS[0], 7, 1)
    for i, info in enumerate(infos):
        client._packet_queue(paho.PUBLISH, PACKETS[2], i + 1, 0, info)
    client._packet_write()
    assert b"".join(sock.sends) == PACKETS[0] + PACKETS[2] * 2
    assert published == [1, 2] and all(info.is_published() for info in infos)


def _awaiting_puback(client: _PahoClient, mid: int) -> paho.MQTTMessageInfo:
    msg = paho.MQTTMessage(mid, b"t/summary")
    msg.qos = 1
    client._out_messages[mid] = msg
    client._inflight_messages += 1
    return msg.info


def test_a_plain_puback_is_handled_without_paho_decoding_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-byte PUBACK (success, no properties) completes its publish as paho would, without paho
    building a ReasonCode and Properties for it; anything else still goes through paho."""
    client, _ = _client(_Sock())
    client._protocol = paho.MQTTv5
    fast, slow = _awaiting_puback(client, 5), _awaiting_puback(client, 6)
    decoded: list[bytes] = []
    real = _packet.decode_puback

    def counting(header: int, packet: bytes, protocol: int) -> object:
        decoded.append(bytes(packet))
        return real(header, packet, protocol)

    monkeypatch.setattr(_packet, "decode_puback", counting)
    client._in_packet = {"command": 0x40, "packet": b"\x00\x05"}
    assert client._handle_pubackcomp("PUBACK") == paho.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert fast.is_published() and 5 not in client._out_messages and decoded == []
    client._in_packet = {"command": 0x40, "packet": b"\x00\x06\x10"}  # "no matching subscribers"
    client._handle_pubackcomp("PUBACK")
    assert slow.is_published() and decoded == [b"\x00\x06\x10"]
    assert client._inflight_messages == 0
    client._in_packet = {"command": 0x40, "packet": b"\x00\x07"}  # unknown id: ignored, as paho does
    assert client._handle_pubackcomp("PUBACK") == paho.MQTTErrorCode.MQTT_ERR_SUCCESS
    got: list[tuple[int, object]] = []
    client.on_publish = lambda c, u, mid, rc, props: got.append((mid, rc))
    _awaiting_puback(client, 8)
    client._in_packet = {"command": 0x40, "packet": b"\x00\x08"}
    client._handle_pubackcomp("PUBACK")  # on_publish set: paho's own path, its own ReasonCode
    assert [mid for mid, _ in got] == [8] and decoded[-1] == b"\x00\x08"


def _publish_packet(topic: bytes, payload: bytes, mid: int, v5: bool, props: bytes = b"\x00") -> bytes:
    return len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + (props if v5 else b"") + payload


@pytest.mark.parametrize("v5", [True, False])
def test_an_incoming_publish_reaches_on_message_as_paho_would_deliver_it(v5: bool) -> None:
    """The fast path of _handle_publish gives on_message what paho's own decoding gives, for QoS 1 frames
    without properties; QoS 0, properties and a missing topic still take paho's path."""
    cases = [
        (0x32, _publish_packet(b"qis/v1/site-a/pump-1/fp", b"{}" + bytes(32), 7, v5)),
        (0x3B, _publish_packet(b"qis/v1/a/b/fp", b"", 65535, v5)),  # retain + dup, empty payload
        (0x32, _publish_packet(b"qis/\xff/fp", b"x", 1, v5)),  # topic not UTF-8
        (0x30, b"\x00\x04t/q0" + (b"\x00" if v5 else b"") + b"x"),  # QoS 0: no packet id
    ]
    if v5:
        cases.append((0x32, _publish_packet(b"t/props", b"x", 9, v5, props=b"\x02\x01\x01")))  # a property
    seen: dict[str, list[tuple[object, ...]]] = {"fast": [], "paho": []}
    kinds: list[str] = []

    def on_message(way: str) -> object:
        def record(client: object, userdata: object, msg: paho.MQTTMessage) -> None:
            try:
                topic: object = msg.topic
            except UnicodeDecodeError:
                topic = UnicodeDecodeError
            seen[way].append((topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain), bool(msg.dup)))
            if way == "fast":
                kinds.append(type(msg).__name__)
        return record

    for way, handle in (("fast", _PahoClient._handle_publish), ("paho", paho.Client._handle_publish)):
        client = paho.Client.__new__(_PahoClient)
        client.__init__(CallbackAPIVersion.VERSION2, client_id="t-in", manual_ack=True,  # type: ignore[misc]
                        protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
        client.on_message = on_message(way)
        for command, packet in cases:
            client._in_packet = {"command": command, "packet": bytearray(packet)}
            assert handle(client) == paho.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert seen["fast"] == seen["paho"] and len(seen["fast"]) == len(cases)
    assert kinds[:3] == ["_Received"] * 3 and set(kinds[3:]) == {"MQTTMessage"}  # the fast path was taken
