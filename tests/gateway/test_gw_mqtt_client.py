"""The gateway's MQTT client module against a real broker: socket options and the incoming queue."""

from __future__ import annotations

import asyncio
import socket

from qis_gateway.mqtt_client import MqttClient, MqttSettings
from support.broker import Broker


def test_every_socket_gets_tcp_nodelay(broker: Broker) -> None:
    async def run() -> list[int]:
        client = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="t-nodelay",
                                         reconnect_min_s=0.05, reconnect_max_s=0.2))
        client.start()
        try:
            assert await client.wait_connected(10.0)
            flags = [client._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)]
            client._client.socket().close()  # the connection drops: paho reconnects on a new socket
            for _ in range(200):
                await asyncio.sleep(0.05)
                sock = client._client.socket()
                if client.connected and sock is not None and sock.fileno() != -1:
                    break
            assert client.connected
            flags.append(client._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            return flags
        finally:
            await client.stop(1.0)

    assert asyncio.run(run()) == [1, 1]


def test_a_qos0_flood_is_bounded_and_counted_and_qos1_is_never_dropped(broker: Broker) -> None:
    import time

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    async def run() -> tuple[int, int, int, list[int]]:
        dropped: list[int] = []
        client = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="t-flood", max_queued=100),
                            (("flood/#", 1),), on_drop=lambda: dropped.append(1))
        client.start()
        assert await client.wait_connected(10.0)
        await asyncio.sleep(0.3)  # subscribed
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="t-flooder")
        pub.max_queued_messages_set(0)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        try:
            for _ in range(5000):  # nobody reads meanwhile: the event loop is busy elsewhere
                pub.publish("flood/a", b"x" * 1024, qos=0)
            last = [pub.publish("flood/b", b"%d" % i, qos=1) for i in range(300)]
            for info in last:
                info.wait_for_publish(10)
            deadline = time.monotonic() + 20
            while client.backlog + client.dropped < 5300 and time.monotonic() < deadline:
                time.sleep(0.05)  # blocks the loop on purpose: paho's thread keeps receiving
            backlog = client.backlog
            qos1: list[int] = []
            while len(qos1) < 300:
                for msg in await asyncio.wait_for(client.next_batch(256), 10):
                    if msg.qos == 1:
                        qos1.append(int(msg.payload))
                        client.ack(msg)
            return backlog, client.dropped, len(dropped), qos1
        finally:
            pub.disconnect()
            pub.loop_stop()
            await client.stop(1.0)

    backlog, dropped, callbacks, qos1 = asyncio.run(run())
    assert backlog <= 100 + 300  # the QoS 0 part bounded; the QoS 1 ones all kept
    assert dropped >= 4800 and callbacks == dropped
    assert qos1 == list(range(300))  # every QoS 1 message delivered, in order
