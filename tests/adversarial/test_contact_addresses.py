"""Issue 18 point 12: peer-supplied contact addresses are IP literals naming one node.

A hostile peer (real id proofs, raw socket) is the only bootstrap of a real ``UdpSwarm`` on 127.0.0.1 and
answers its join lookups with contacts at a host name, 0.0.0.0, a multicast and the broadcast address.
Before the fix the node sent requests to all of them (a name resolved synchronously on its event loop);
now such answers are refused as malformed and nothing is sent there.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.errors import WireError

from .conftest import run
from .hostile import open_hostile

BAD = ["localhost", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1", "127.000.000.001",
       "node.example"]


def test_contact_ip_accepts_literals_only() -> None:
    for ip in ("127.0.0.1", "10.1.2.3", "::1", "fe80::1", "192.168.1.255"):
        assert wire.contact_ip(ip) == ip
    for ip in BAD + ["", "1.2.3.4.5", "x" * 46]:
        try:
            wire.contact_ip(ip)
        except WireError:
            continue
        raise AssertionError("accepted %r" % ip)


def test_node_sends_nothing_to_peer_supplied_names_or_unspecified(tmp_path: Path) -> None:
    async def main() -> None:

        traps = []
        for _ in range(2):  # 0.0.0.0:port reaches 127.0.0.1:port on Linux: a trap per bad contact
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            traps.append(s)
        hostile = await open_hostile(b"h" * 32)


        hostile.nodes_contacts = [
            [os.urandom(32), "localhost", traps[0].getsockname()[1]],
            [os.urandom(32), "0.0.0.0", traps[1].getsockname()[1]],
        ]
        node = UdpSwarm(("127.0.0.1", 0), tmp_path / "victim", [hostile.address],
                        config=SwarmConfig(rate_limit_key="addr"), join_timeout_s=2.0)
        await node.start()
        try:
            await asyncio.sleep(1.5)
            got = 0
            for s in traps:
                try:
                    while True:
                        s.recv(2048)
                        got += 1
                except BlockingIOError:
                    pass
            assert got == 0, "the node sent %d datagram(s) to peer-supplied name/unspecified addresses" % got
            assert node.node.counters["drop_malformed"] >= 1  # the poisoned NODES answers, counted
            assert hostile.received, "the node did talk to its (hostile) bootstrap"
        finally:
            await node.stop(graceful=False)
            hostile.transport.close()
            for s in traps:
                s.close()


    run(main(), 30)
