"""Issue 18 point 4, back-pressure on the requester's side: a peer that sheds our requests (BUSY, or a
retry) gets fewer of them, not the same flood (per-contact AIMD window, core/pacing.py). Fast, on the
in-memory network of real node cores."""

from __future__ import annotations

from dataclasses import replace

import pytest
from qis_gateway.swarm.core import pacing
from qis_gateway.swarm.core.events import GetDone, JoinDone, PutDone
from qis_gateway.swarm.core.node import COUNTER_NAMES
from swarm.conftest import TEST_CONFIG, MemNet

PEER = ("10.0.0.1", 1)


def test_window_halves_once_per_recovery_period_and_grows_back() -> None:
    p = pacing.Pacing(dict.fromkeys(COUNTER_NAMES, 0))
    assert p.room(PEER, 10_000)  # never pushed back: not paced
    p.congested(PEER, sent_s=1.0, inflight=40, now_s=2.0, busy=True)
    assert p.window(PEER) == 20.0  # half the flight
    p.congested(PEER, sent_s=1.5, inflight=40, now_s=2.1, busy=True)  # sent before the decrease: same episode
    assert p.window(PEER) == 20.0
    p.congested(PEER, sent_s=2.05, inflight=20, now_s=2.2, busy=False)
    assert p.window(PEER) == 10.0
    assert not p.room(PEER, 10) and p.room(PEER, 9)
    p.hold(PEER, "a")
    p.hold(PEER, "b")
    assert not p.room(PEER, 0)  # nothing overtakes the queue
    assert p.release(PEER, 10) is None
    assert p.release(PEER, 9) == "a"
    for _ in range(10):  # one window's worth of answers: +1
        p.answered(PEER)
    assert p.window(PEER) == pytest.approx(11.0, abs=0.05)
    for _ in range(2):
        p.congested(PEER, sent_s=10.0 + _, inflight=0, now_s=10.5 + _, busy=True)
    assert p.window(PEER) == pytest.approx(pacing.MIN_WINDOW, abs=0.8)
    other = ("10.0.0.2", 1)
    p.congested(other, sent_s=1.0, inflight=1, now_s=2.0, busy=False)  # one lost PING: a gentle start
    assert p.window(other) == pacing.INITIAL_WINDOW


def _burst(paced: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, int], int, int]:
    """2,000 gets in 4 s (a reading burst) from a gateway to 3 peers that each admit 50 requests/s from it."""
    if not paced:
        monkeypatch.setattr(pacing.Pacing, "congested", lambda self, addr, sent_s, inflight, now_s, busy: None)
    net = MemNet(seed=11)
    strict = replace(TEST_CONFIG, rate_limit_per_s=50.0, rate_limit_burst=100.0)
    peers = [net.add(strict) for _ in range(3)]
    for n in peers[1:]:
        n.bootstrap([peers[0].test_addr], net.now)
        net.wait_for(JoinDone)
    gw = net.add()
    gw.bootstrap([peers[0].test_addr], net.now)
    net.wait_for(JoinDone)
    net.run(until=net.now + 5.0)
    assert len(gw.table) == 3
    lowest = 3
    for i in range(2000):
        gw.start_get(bytes([i % 251, i // 251]) * 16, 10, net.now)
        net.run(until=net.now + 0.002)
        lowest = min(lowest, len(gw.table))
    for _ in range(30):
        net.run(until=net.now + 1.0)
        lowest = min(lowest, len(gw.table))
    assert len(net.take(GetDone)) == 2000
    refused = sum(n.counters["drop_rate_limited"] for n in peers)
    return gw.counters, refused, lowest


def test_a_shedding_peer_gets_fewer_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    unpaced, refused_unpaced, _ = _burst(False, monkeypatch)
    monkeypatch.undo()
    paced, refused_paced, lowest = _burst(True, monkeypatch)
    print("unpaced: sent %d, refused %d, busy %d; paced: sent %d, refused %d, busy %d, queued %d, retries held %d, "
          "lowest %d" % (unpaced["sent"], refused_unpaced, unpaced["busy_in"], paced["sent"], refused_paced,
                         paced["busy_in"], paced["paced"], paced["retries_held"], lowest))
    assert paced["paced"] > 0 and paced["pacing_decreases"] > 0
    assert refused_paced * 2 < refused_unpaced  # the peers shed far less: we sent them less
    assert paced["sent"] < unpaced["sent"]
    assert lowest == 3


def test_a_dead_peer_behind_its_window_does_not_hold_every_put() -> None:
    """A peer stops without a LEAVE, then an outbox flusher puts 150 outcomes, 32 in flight. Requests to the
    dead peer queued behind its window were never sent, so they never timed out: every put's node lookup
    waited for half its deadline (p50 2.51 s, 82 ops expired). Now a queued request fails after the
    peer's timeout when the peer stayed silent (core/pacing.py)."""
    net = MemNet(seed=5, latency_s=0.005)
    nodes = net.build(12)
    net.run(until=net.now + 5.0)
    origin, dead = nodes[0], nodes[6]
    dead_id = int.from_bytes(dead.node_id, "big")
    net.dead.add(dead.test_addr)
    t0 = net.now
    elapsed: list[float] = []
    started = evicted_at = 0
    while len(elapsed) < 150 and net.now < t0 + 60.0:
        while started < 150 and started - len(elapsed) < 32:
            origin.start_put_many((b"%05d" % started) * 6 + b"aa", [b"v" * 200], net.now)
            started += 1
        net.run(until=net.now + 0.01)
        elapsed += [done.elapsed_s for _, done in net.take(PutDone)]
        if not evicted_at and origin.table.find(dead_id) is None:
            evicted_at = net.now - t0
    c = origin.counters
    print("put elapsed p50 %.3f s, max %.3f s, ops expired %d, held failed %d, dead contact evicted after %.2f s"
          % (sorted(elapsed)[75], max(elapsed), c["ops_expired"], c["held_failed"], evicted_at))
    assert len(elapsed) == 150 and c["paced"] > 0 and c["held_failed"] > 0
    assert c["ops_expired"] == 0
    assert max(elapsed) < origin.config.op_deadline_s / 4
    assert 0 < evicted_at < 1.0
