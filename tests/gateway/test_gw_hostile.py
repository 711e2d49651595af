"""Issue 18 on the gateway side: distinct outcomes stay distinct (point 7), error answers are paced per
device (point 9), and outcomes are not signed while the clock is clearly wrong (point 10)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qis_gateway.config import OutboxSettings
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.packets import verify

from .helpers import MACHINE, make_rig, metric

NOW_S = 1_790_000_000.0  # 2026-09: a plausible, synchronised wall clock


def run(coro):
    return asyncio.run(coro)


async def flush_all(rig) -> None:
    flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(flush_rate_per_s=1000, retry_min_s=0.01),
                            clock=lambda: NOW_S)
    for _ in range(100):
        if not rig.state.pending():
            return
        await flusher._flush_once()


# -- point 7 --------------------------------------------------------------------------------------------------
def test_twenty_equal_outcomes_in_one_second_are_twenty_packets(tmp_path: Path) -> None:
    """After an outage a board's queued outcomes arrive together: same fields, vector and label, admitted in
    the same second. Each is its own packet at every level, and the next summary counts all 20."""
    rig = make_rig(tmp_path, clock=lambda: NOW_S)
    board = rig.board()
    t, frame, fp_seq = board.fp(temperature_c=85, vibration=8.0)
    assert rig.bridge.admit(t, frame).outcome == "accepted"
    for _ in range(20):
        t, frame, _ = board.outcome(fp_seq, "bearing_wear")
        assert rig.bridge.admit(t, frame).outcome == "accepted"
    levels = 1 + len(MACHINE.coarser)
    assert rig.state.pending() == 20 * levels
    run(flush_all(rig))
    assert rig.state.pending() == 0
    reading = rig.state.reading(board.device, fp_seq)
    for address in MACHINE.level_addresses(reading.fields):
        held = rig.swarm.shared[address]
        assert len(held) == 20
        packets = [verify(v, None, address) for v in held]
        assert len({p.packet_id for p in packets}) == 20
        assert all(p.version == 2 and p.label == "bearing_wear" and p.created_s == int(NOW_S) for p in packets)
    t, frame, _ = board.fp(temperature_c=85, vibration=8.0)
    adm = rig.bridge.admit(t, frame)
    summary = run(rig.bridge.answer_fp(adm))
    assert summary.n == 20 and summary.level == 0 and summary.top[0][0] == "bearing_wear"


def test_the_nonce_names_no_device_and_signing_a_frame_again_gives_the_same_bytes(tmp_path: Path) -> None:
    """Two boards with equal outcomes: their packets' nonces differ and hold no device id; the same frames
    admitted again from scratch (a crash before the rows were written) sign to the very same bytes."""
    rig = make_rig(tmp_path / "one", clock=lambda: NOW_S)
    again = make_rig(tmp_path / "two", clock=lambda: NOW_S)
    again.bridge.signing_key = rig.bridge.signing_key
    frames = []
    for device in ("pump-01", "pump-02"):
        board = rig.board(device)
        again.registry.add(device, board.site, board.secret)
        t, frame, fp_seq = board.fp()
        frames.append((t, frame))
        frames.append(board.outcome(fp_seq, "ok")[:2])
    for t, frame in frames:
        assert rig.bridge.admit(t, frame).outcome == "accepted"
        assert again.bridge.admit(t, frame).outcome == "accepted"
    rows = rig.state.due(1e12, 100)
    assert len(rows) == 2 * (1 + len(MACHINE.coarser))
    nonces = {}
    for item in rows:
        assert item.device.encode() not in item.packet
        nonces.setdefault(item.device, set()).add(verify(item.packet).nonce)
    assert all(len(n) == 1 for n in nonces.values())  # one nonce per outcome, on each of its levels
    assert nonces["pump-01"] != nonces["pump-02"]
    assert sorted(r.packet for r in rows) == sorted(r.packet for r in again.state.due(1e12, 100))


# -- point 9 --------------------------------------------------------------------------------------------------
def test_a_bad_tag_flood_gets_a_few_error_answers_per_minute_and_the_rest_counted(tmp_path: Path) -> None:
    now = [NOW_S]
    rig = make_rig(tmp_path, clock=lambda: now[0])
    board, other = rig.board("pump-01"), rig.board("pump-02")
    t, frame, _ = board.fp()
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    flood = 5000
    for i in range(flood):
        now[0] = NOW_S + i * 0.001  # 5,000 frames in 5 s
        assert rig.bridge.admit(t, tampered).reason == "tag"
    answered = len(rig.published.bodies(board, "error"))
    assert 1 <= answered <= 6
    assert metric(rig.metrics, "qis_gateway_rejections_total", reason="tag") == flood
    assert metric(rig.metrics, "qis_gateway_error_answers_suppressed_total", reason="tag") == flood - answered
    # another device's budget is its own
    ot, oframe, _ = other.fp()
    assert rig.bridge.admit(ot, oframe[:-1] + bytes([oframe[-1] ^ 1])).reason == "tag"
    assert len(rig.published.bodies(other, "error")) == 1
    # a minute on, the flood continues: a few more answers, no more
    for i in range(flood):
        now[0] = NOW_S + 65 + i * 0.001
        rig.bridge.admit(t, tampered)
    assert answered < len(rig.published.bodies(board, "error")) <= answered + 6
    # the board's honest traffic is untouched
    t, frame, _ = board.fp()
    assert rig.bridge.admit(t, frame).outcome == "accepted"


# -- point 10 -------------------------------------------------------------------------------------------------
def test_outcomes_are_held_while_the_clock_was_never_set_and_signed_once_it_is(tmp_path: Path) -> None:
    """A Pi without a real-time clock boots in 2025: its outcomes are accepted and held (durably, across a
    restart), none is signed with the wrong time, and all are signed and stored once network time arrives."""
    now = [1_735_000_000.0]  # 2024-12-24: before any plausible time
    rig = make_rig(tmp_path, clock=lambda: now[0])
    board = rig.board()
    t, frame, fp_seq = board.fp()
    assert rig.bridge.admit(t, frame).outcome == "accepted"
    frames = [board.outcome(fp_seq, "bearing_wear")[:2] for _ in range(3)]
    for t, frame in frames:
        assert rig.bridge.admit(t, frame).outcome == "accepted"
    assert rig.bridge.admit(*frames[0]).outcome == "duplicate"  # the broker redelivers: still one outcome
    assert rig.state.pending() == 0 and rig.state.held_count() == 3
    assert metric(rig.metrics, "qis_gateway_signing_refused_total") == 3
    assert metric(rig.metrics, "qis_gateway_outcomes_held") == 3
    assert rig.bridge.sign_held() == 0  # still the wrong clock
    # the gateway restarts (still without network time): the held outcomes are still there
    from qis_gateway.bridge import Bridge

    bridge = Bridge(rig.registry, rig.state, rig.bridge.schemas, rig.bridge.signing_key, rig.bridge.evidence,
                    rig.published, rig.metrics, clock=lambda: now[0])
    assert bridge.sign_held() == 0 and rig.state.held_count() == 3
    now[0] = NOW_S  # network time arrives
    assert bridge.sign_held() == 3
    levels = 1 + len(MACHINE.coarser)
    assert rig.state.held_count() == 0 and rig.state.pending() == 3 * levels
    assert metric(rig.metrics, "qis_gateway_outcomes_held") == 0
    run(flush_all(rig))
    reading = rig.state.reading(board.device, fp_seq)
    held = rig.swarm.shared[MACHINE.level_addresses(reading.fields)[0]]
    packets = [verify(v) for v in held]
    assert len(packets) == 3 and all(p.created_s == int(NOW_S) for p in packets)
    assert len({p.nonce for p in packets}) == 3


def test_a_clock_behind_what_the_gateway_signed_before_holds_outcomes_even_after_a_restart(tmp_path: Path) -> None:
    now = [NOW_S]
    rig = make_rig(tmp_path, clock=lambda: now[0])
    board = rig.board()
    t, frame, fp_seq = board.fp()
    rig.bridge.admit(t, frame)
    assert rig.bridge.admit(*board.outcome(fp_seq, "ok")[:2]).outcome == "accepted"
    assert rig.state.pending() == 1 + len(MACHINE.coarser)
    now[0] = NOW_S - 2 * 86400  # rebooted without network time: two days behind (fake-hwclock)
    from qis_gateway.bridge import Bridge

    restarted = Bridge(rig.registry, rig.state, rig.bridge.schemas, rig.bridge.signing_key, rig.bridge.evidence,
                       rig.published, rig.metrics, clock=lambda: now[0])  # its floor comes from the outbox
    t, frame, fp_seq = board.fp()
    restarted.admit(t, frame)
    assert restarted.admit(*board.outcome(fp_seq, "ok")[:2]).outcome == "accepted"
    assert rig.state.held_count() == 1 and rig.state.pending() == 1 + len(MACHINE.coarser)
    now[0] = NOW_S + 60
    assert restarted.sign_held() == 1 and rig.state.held_count() == 0
    assert rig.state.pending() == 2 * (1 + len(MACHINE.coarser))
