"""Issue 18 point 11, reflection amplification: a FIND_NODE / FIND_VALUE from a forged source address used
to be answered in full (NODES with k contacts, VALUES with a page of values): about 12x the request's
bytes sent to whoever's address was forged. Now a node answers a source that has not validated its
address only with a PONG carrying a challenge, at most 3x the bytes it received (QUIC's rule, RFC 9000
section 8.1); the request is held and answered in full when the requester's PROOF of that challenge arrives.

The fast test counts bytes against a real node core fed encoded datagrams; the slow one does it on
loopback against a running node, the "victim" being the socket whose address the requests carry."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from pathlib import Path

import pytest
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.events import GetDone, PutDone
from swarm.conftest import MemNet

from .conftest import run

ADDR = b"\x42" * 32
REQUESTS = 3000


def _forged(i: int, rng: random.Random) -> bytes:
    tid, sender, nonce = rng.getrandbits(32), rng.randbytes(32), rng.randbytes(16)
    if i % 2:
        return wire.encode(wire.FindValue(tid, sender, nonce, ADDR, 0))
    return wire.encode(wire.FindNode(tid, sender, nonce, rng.randbytes(32)))


def test_forged_requests_are_answered_with_at_most_3x_their_bytes() -> None:
    net = MemNet(seed=11)
    nodes = net.build(20)
    net.run(until=net.now + 30.0)
    for i in range(8):  # values at ADDR, so FIND_VALUE answers would carry them
        nodes[1].start_put(ADDR, b"value %02d " % i + b"x" * 200, net.now)
        net.wait_for(PutDone)
    target = max(nodes, key=lambda n: n.store.count(ADDR))
    assert target.store.count(ADDR) == 8 and len(target.table) >= 8
    net.flush(target)
    rng = random.Random(3)
    checks_before = target.counters["address_checks"]
    bytes_in = bytes_out = 0
    for i in range(REQUESTS):
        data = _forged(i, rng)
        src = ("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255 or 1), 6881)
        target.receive_datagram(data, src, net.now)
        bytes_in += len(data)
        bytes_out += sum(len(d) for d, dst in target.datagrams_to_send() if dst == src)
    ratio = bytes_out / bytes_in
    print("forged requests: %d bytes in, %d bytes out, %.2fx" % (bytes_in, bytes_out, ratio))
    assert ratio <= 3.0
    assert target.counters["address_checks"] - checks_before == REQUESTS
    # an honest newcomer still gets everything: it validates its address and its requests are answered
    reader = net.add()
    del net.nodes[reader.test_addr]
    reader.test_addr = ("127.0.0.9", 20999)  # an IP of its own: validation is per IP
    net.nodes[reader.test_addr] = reader
    reader.bootstrap([nodes[5].test_addr], net.now)
    net.run(until=net.now + 10.0)
    reader.start_get(ADDR, 50, net.now)
    (_, done), = net.wait_for(GetDone)
    assert len(done.values) == 8
    assert reader.counters["address_validations"] > 0


@pytest.mark.slow
@pytest.mark.adversarial
def test_reflection_on_loopback_stays_under_3x(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = SwarmConfig(rate_limit_key="addr")
        first = UdpSwarm(("127.0.0.1", 0), tmp_path / "n0", [], config=cfg)
        await first.start()
        nodes = [first]
        for i in range(1, 6):
            n = UdpSwarm(("127.0.0.1", 0), tmp_path / ("n%d" % i), [first.address], config=cfg)
            await n.start()
            nodes.append(n)
        for i in range(8):
            await nodes[2].put(ADDR, b"value %02d " % i + b"x" * 200)
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.bind(("127.0.0.2", 0))  # whose address the forged requests carry
        victim.setblocking(False)
        rng = random.Random(os.getpid())
        bytes_in = bytes_out = 0

        def drain() -> int:
            got = 0
            try:
                while True:
                    got += len(victim.recv(4096))
            except BlockingIOError:
                return got

        try:
            for i in range(REQUESTS):
                data = _forged(i, rng)
                victim.sendto(data, first.address)
                bytes_in += len(data)
                if i % 20 == 19:
                    await asyncio.sleep(0.05)  # <= 400/s: under the node's rate limit for one source (500/s)
                    bytes_out += drain()  # (the socket buffer holds only ~256 small datagrams)
            await asyncio.sleep(1.0)
            bytes_out += drain()
            ratio = bytes_out / bytes_in
            print("loopback: %d forged requests, %d bytes in, %d bytes reflected, %.2fx"
                  % (REQUESTS, bytes_in, bytes_out, ratio))
            assert bytes_out > 0  # the node did answer (with PONGs)
            assert ratio <= 3.0
        finally:
            victim.close()
            for n in nodes:
                await n.stop(graceful=False)

    run(main(), 120)
