"""PutOp in pages (core/put.py): a few pages in flight per holder, a replica only when a holder kept every
value, BUSY and lost pages sent again instead of failing the put."""

from __future__ import annotations

from dataclasses import replace

from qis_gateway.swarm.core import put, wire
from qis_gateway.swarm.core.events import PutDone

from .conftest import TEST_CONFIG, MemNet

ADDRESS = b"\x42" * 32


def _values(n: int) -> list[bytes]:
    return [b"v%04d" % i + b"x" * 300 for i in range(n)]  # ~4 per datagram: n // 4 pages


def _stores(net: MemNet, src: tuple[str, int]) -> list[tuple[tuple[str, int], wire.Store]]:
    out = []
    for s, data, dst in net.sent:
        if s == src:
            msg = wire.decode(data)
            if type(msg) is wire.Store:
                out.append((dst, msg))
    return out


def test_every_holder_gets_every_page_and_counts_once() -> None:
    net = MemNet(seed=3)
    nodes = net.build(5)
    origin = nodes[0]
    values = _values(40)
    origin.start_put_many(ADDRESS, values, net.now)
    (_, done), = net.wait_for(PutDone)
    assert done.replicas == 4
    for n in nodes[1:]:
        assert set(n.store.values(ADDRESS, 100)) == set(values)
    pages = len(put.chunks(values, TEST_CONFIG.max_datagram - wire.REPLY_OVERHEAD))
    assert pages > put.PAGE_WINDOW
    assert len(_stores(net, origin.test_addr)) == 4 * pages  # no page sent twice on a lossless network


def test_at_most_a_window_of_pages_in_flight_per_holder() -> None:
    net = MemNet(seed=4, latency_s=0.01)
    nodes = net.build(3)
    origin = nodes[0]
    net.sent.clear()
    origin.start_put_many(ADDRESS, _values(60), net.now)
    (_, done), = net.wait_for(PutDone)
    assert done.replicas == 2
    outstanding: dict[tuple[str, int], int] = {}
    most = 0
    for src, data, dst in net.sent:  # in the order sent: STOREs out, STOREDs back
        kind = type(wire.decode(data))
        if kind is wire.Store and src == origin.test_addr:
            outstanding[dst] = outstanding.get(dst, 0) + 1
            most = max(most, outstanding[dst])
        elif kind is wire.Stored and dst == origin.test_addr:
            outstanding[src] -= 1
    assert most == put.PAGE_WINDOW


def test_a_holder_that_keeps_only_part_is_no_replica() -> None:
    """A holder whose storage refuses one value (here its validator) acknowledges that page with a short
    count: it is not a replica, although it kept the other pages."""
    net = MemNet(seed=5)
    bad = _values(20)[7]
    picky = lambda address, value: value != bad  # noqa: E731
    origin = net.add()
    others = [net.add(validator=picky if i == 0 else None) for i in range(3)]
    for n in others:
        n.bootstrap([origin.test_addr], net.now)
        net.run(until=net.now + 1.0)
    origin.start_put_many(ADDRESS, _values(20), net.now)
    (_, done), = net.wait_for(PutDone)
    assert done.replicas == 2
    assert done.elapsed_s < 1.0  # the refusing holder's pages in flight still end the put (not its deadline)


def test_lost_pages_are_sent_again_and_the_put_succeeds() -> None:
    """Every first copy of each STORE is lost (twice: the RPC retry too): the op sends the page again."""
    net = MemNet(seed=6)
    nodes = net.build(3)
    origin = nodes[0]
    seen: dict[bytes, int] = {}

    def drop(src: tuple[str, int], data: bytes, dst: tuple[str, int]) -> bool:
        msg = wire.decode(data)
        if type(msg) is not wire.Store:
            return False
        key = dst[1].to_bytes(4, "big") + b"".join(msg.values)
        seen[key] = seen.get(key, 0) + 1
        return seen[key] <= 2

    net.drop = drop
    values = _values(24)
    origin.start_put_many(ADDRESS, values, net.now)
    (_, done), = net.wait_for(PutDone)
    assert done.replicas == 2
    for n in nodes[1:]:
        assert set(n.store.values(ADDRESS, 100)) == set(values)


def test_busy_holder_gets_paced_retries_until_it_takes_the_pages() -> None:
    """Holders whose rate limiters refuse the burst (one BUSY answer per interval, the rest dropped): the
    put sends those pages again and ends with both holders replicas instead of failing."""
    limited = replace(TEST_CONFIG, rate_limit_per_s=40.0, rate_limit_burst=6.0, rate_limit_key="addr")
    net = MemNet(seed=7)
    origin = net.add()
    holders = [net.add(limited) for _ in range(2)]
    for n in holders:
        n.bootstrap([origin.test_addr], net.now)
        net.run(until=net.now + 2.0)  # joined, and the buckets full again
    values = _values(48)
    origin.start_put_many(ADDRESS, values, net.now)
    (_, done), = net.wait_for(PutDone)
    assert sum(n.counters["drop_rate_limited"] for n in holders) > 0  # the burst really was refused
    assert origin.counters["busy_in"] > 0
    assert done.replicas == 2
    for n in holders:
        assert set(n.store.values(ADDRESS, 100)) == set(values)
