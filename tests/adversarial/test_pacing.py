"""Issue 18 point 4, back-pressure on the requester's side: a peer that sheds our requests (BUSY, or a
retry) gets fewer of them, not the same flood (per-contact AIMD window, core/pacing.py). Fast, on the
in-memory network of real node cores."""

from __future__ import annotations

from dataclasses import replace

import pytest
from qis_gateway.swarm.core import pacing
from qis_gateway.swarm.core.events import GetDone, JoinDone
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
