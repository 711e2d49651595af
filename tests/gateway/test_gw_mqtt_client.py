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
