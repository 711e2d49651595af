"""Bridge behaviour in memory: admission, replay/duplicate rules, answers, outcomes, fallback, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis import messages
from qis_gateway.config import OutboxSettings, SynthesisSettings
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.packets import OutcomePacket, encode, verify

from .helpers import MACHINE, make_rig, metric


def run(coro):
    return asyncio.run(coro)


def answer(rig, topic_name, frame):
    adm = rig.bridge.admit(topic_name, frame)
    assert adm.outcome == "accepted", adm
    return run(rig.bridge.answer_fp(adm))


async def flush_all(rig) -> int:
    flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(flush_rate_per_s=1000, retry_min_s=0.01))
    items = rig.state.due(1e12, 1000)
    await flusher._flush_once()
    return len(items)


def test_fp_with_empty_swarm_gets_a_plain_n0_summary(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    out = answer(rig, t, frame)
    bodies = rig.published.bodies(board, "summary")
    assert len(bodies) == 1
    assert bodies[0]["re"] == seq and bodies[0]["n"] == 0 and bodies[0]["enough"] is False
    assert bodies[0]["top"] == [] and out.n == 0
    assert rig.registry.get(board.device).last_seq == seq
    assert rig.state.reading(board.device, seq) is not None
    assert rig.swarm.gets == 1 + len(MACHINE.coarser)  # exact then every coarser level, all empty


def test_outcome_is_signed_at_every_level_and_seen_by_another_gateway(tmp_path: Path) -> None:
    shared: dict[bytes, list[bytes]] = {}
    a = make_rig(tmp_path / "a", shared, "a")
    b = make_rig(tmp_path / "b", shared, "b")
    board = a.board()
    t, frame, fp_seq = board.fp(temperature_c=85, vibration=8.0)
    answer(a, t, frame)
    t, frame, _ = board.outcome(fp_seq, "bearing_wear", value=12.5)
    assert a.bridge.admit(t, frame).outcome == "accepted"
    assert a.state.pending() == 1 + len(MACHINE.coarser)
    assert run(flush_all(a)) == 4 and a.state.pending() == 0
    reading = a.state.reading(board.device, fp_seq)
    addresses = MACHINE.level_addresses(reading.fields)
    for address in addresses:
        (data,) = shared[address]
        p = verify(data, None, address)
        assert p.label == "bearing_wear" and p.value == 12.5 and p.vector == reading.vector
    # a second gateway, another board with a similar reading: it hears about the first board's outcome
    other = b.board("fan-07", "site-b")
    t, frame, seq = other.fp(temperature_c=86, vibration=8.2)
    out = answer(b, t, frame)
    assert out.n == 1 and out.enough and out.top[0][0] == "bearing_wear" and out.level == 0
    (body,) = b.published.bodies(other, "summary")
    assert body["top"][0] == ["bearing_wear", 1000] and body["re"] == seq


def test_sparse_exact_address_falls_back_to_a_coarser_level(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settings=SynthesisSettings(min_n=2))
    board = rig.board()
    t, frame, seq = board.fp(temperature_c=30)
    answer(rig, t, frame)
    reading = rig.state.reading(board.device, seq)
    coarse = MACHINE.level_addresses(reading.fields)[2]  # machine_class + vibration_band
    for i in range(3):
        p = OutcomePacket(coarse, MACHINE.schema_id, 1_700_000_000 + i, reading.vector, "ok")
        rig.swarm.shared.setdefault(coarse, []).append(encode(p, rig.bridge.signing_key))
    t, frame, _ = board.fp(temperature_c=30)
    out = answer(rig, t, frame)
    assert out.level == 2 and out.n == 3 and out.top[0][0] == "ok"


def test_replay_refused_but_broker_redelivery_is_a_duplicate(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    answer(rig, t, frame)
    again = rig.bridge.admit(t, frame)  # same bytes: the broker resent it (lost PUBACK)
    assert again.outcome == "duplicate" and again.needs_answer
    # a different frame reusing an old seq is a replay
    board.seq = seq - 1
    t2, frame2, _ = board.fp(temperature_c=20)
    refused = rig.bridge.admit(t2, frame2)
    assert refused.outcome == "rejected" and refused.reason == "replay"
    assert metric(rig.metrics, "qis_gateway_rejections_total", reason="replay") == 1
    (err,) = rig.published.bodies(board, "error")
    assert err["code"] == "replay" and err["seq"] == seq


def test_refusals_are_counted_and_good_traffic_still_answered(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, _ = board.fp()
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    assert rig.bridge.admit(t, tampered).reason == "tag"
    stranger = rig.board("ghost")
    rig.registry.revoke("ghost")
    gt, gframe, _ = stranger.fp()
    assert rig.bridge.admit(gt, gframe).reason == "revoked"
    assert rig.bridge.admit("qis/v1/site-a/nobody/fp", frame).reason == "unknown_device"
    assert rig.bridge.admit("qis/v1/site-b/pump-01/fp", frame).reason == "site"
    assert rig.bridge.admit("not/our/topic", b"x").reason == "topic"
    ot, oframe, _ = board.outcome(999, "late")
    assert rig.bridge.admit(ot, oframe).reason == "unknown_reading"
    again = rig.bridge.admit(ot, oframe)  # the authentic refused frame consumed its seq: replaying it is
    assert again.outcome == "duplicate" and not again.needs_answer  # a duplicate, with no second error
    board.seq += 1
    body = {"v": 1, "kind": "fp", "dev": "pump-01", "seq": board.seq, "schema": "nope/1",
            "fields": {"schema": "nope/1"}, "vec": []}
    bad_schema = messages.encode_frame(body, board.secret)
    assert rig.bridge.admit(t, bad_schema).reason == "schema"
    assert not rig.bridge.admit(t, bad_schema).needs_answer  # duplicate of a refused fp: nothing to answer
    board.seq += 1
    body = {"v": 1, "kind": "fp", "dev": "pump-01", "seq": board.seq, "schema": MACHINE.schema_id,
            "fields": {"schema": MACHINE.schema_id, "machine_class": "pump"}, "vec": [1, 2, 3]}
    assert rig.bridge.admit(t, messages.encode_frame(body, board.secret)).reason == "fields"
    # good traffic still goes through
    t, frame, _ = board.fp()
    out = answer(rig, t, frame)
    assert out.n == 0
    for reason in ("tag", "revoked", "unknown_device", "site", "topic", "unknown_reading", "schema", "fields"):
        assert metric(rig.metrics, "qis_gateway_rejections_total", reason=reason) == 1, reason
    codes = sorted(b["code"] for b in rig.published.bodies(board, "error"))
    assert codes == ["fields", "schema", "site", "tag", "unknown_reading"]  # known device: answered
    assert rig.published.bodies(stranger, "error") == []  # revoked: not answered


def test_out_of_range_numbers_in_authentic_outcomes_are_refused(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    rig.bridge.admit(t, frame)
    for extra in ({"re": 10**30}, {"re": seq, "value": 10**400}, {"re": seq, "value": float("inf")}):
        board.seq += 1
        body = {"v": 1, "kind": "outcome", "dev": board.device, "seq": board.seq, "label": "x"}
        body.update(extra)
        adm = rig.bridge.admit(board.topic("outcome"), messages.encode_frame(body, board.secret))
        assert adm.outcome == "rejected" and adm.reason in ("field", "packet"), extra
    assert rig.state.pending() == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic_name=st.sampled_from(["qis/v1/site-a/pump-01/fp", "qis/v1/site-a/pump-01/outcome",
                                   "qis/v1/site-a/pump-01/summary", "qis/v1/+/#/fp", "qis/v1/site-a/x/fp", ""]),
       payload=st.binary(max_size=1200))
def test_garbage_is_refused_never_crashes(tmp_path_factory: pytest.TempPathFactory, topic_name: str,
                                          payload: bytes) -> None:
    rig = _GARBAGE_RIG.get("rig")
    if rig is None:
        rig = _GARBAGE_RIG["rig"] = make_rig(tmp_path_factory.mktemp("garbage"))
        rig.board()
    before = sum(s.value for m in rig.metrics.rejections.collect() for s in m.samples if s.name.endswith("_total"))
    adm = rig.bridge.admit(topic_name, payload)
    assert adm.outcome == "rejected" and adm.reason
    after = sum(s.value for m in rig.metrics.rejections.collect() for s in m.samples if s.name.endswith("_total"))
    assert after == before + 1
    good = rig.board()
    good.seq = rig.registry.get(good.device).last_seq
    t, frame, _ = good.fp()
    assert rig.bridge.admit(t, frame).outcome == "accepted"  # good traffic still goes through


_GARBAGE_RIG: dict[str, object] = {}

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.integers(2**53, 2**80) | st.floats(allow_nan=False)
                     | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["fp", "outcome"]),
       extra=st.dictionaries(st.sampled_from(["schema", "fields", "vec", "re", "label", "value", "weight", "seq",
                                              "v", "kind", "dev"]), _json, max_size=6))
def test_authentic_but_malformed_bodies_are_refused(tmp_path_factory: pytest.TempPathFactory, kind: str,
                                                     extra: dict) -> None:
    """Frames with a valid tag (the board's own secret) and hostile bodies: refused with a reason, or --
    when hypothesis happens to build a valid frame -- accepted; never an exception."""
    rig = _GARBAGE_RIG.get("auth")
    if rig is None:
        rig = _GARBAGE_RIG["auth"] = make_rig(tmp_path_factory.mktemp("auth"))
    board = rig.board("pump-09")
    body = {"v": 1, "kind": kind, "dev": board.device, "seq": rig.registry.get(board.device).last_seq + 1,
            "schema": MACHINE.schema_id, "fields": {"schema": MACHINE.schema_id}, "vec": [], "re": 0,
            "label": "x"}
    body.update(extra)
    try:
        frame = messages.encode_frame(body, board.secret)
    except (ValueError, TypeError):
        return  # not serialisable as a frame at all
    adm = rig.bridge.admit(board.topic(kind), frame)
    # "duplicate": an earlier example already sent these very bytes (an extra "seq" can repeat one)
    assert adm.outcome in ("accepted", "rejected", "duplicate")
    if adm.outcome == "rejected":
        assert adm.reason and metric(rig.metrics, "qis_gateway_rejections_total", reason=adm.reason) >= 1


def test_outbox_keeps_packets_through_an_outage(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    answer(rig, t, frame)
    rig.swarm.available = False
    t, frame, _ = board.outcome(seq, "fixed")
    assert rig.bridge.admit(t, frame).outcome == "accepted"

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics,
                                OutboxSettings(flush_rate_per_s=1000, retry_min_s=0.05, retry_max_s=0.1))
        flusher.start()
        await asyncio.sleep(0.3)
        assert rig.state.pending() == 4 and not rig.swarm.shared
        rig.swarm.available = True
        for _ in range(100):
            if rig.state.pending() == 0:
                break
            await asyncio.sleep(0.05)
        await flusher.stop()

    run(scenario())
    assert rig.state.pending() == 0 and rig.state.stored() == 4
    assert metric(rig.metrics, "qis_gateway_packets_stored_total") == 4
    assert metric(rig.metrics, "qis_gateway_put_failures_total") >= 1


def test_flusher_rate_is_bounded(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    for _ in range(10):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    assert rig.state.pending() == 40

    async def scenario() -> float:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(flush_rate_per_s=10))
        loop = asyncio.get_running_loop()
        start = loop.time()
        flusher.start()
        while rig.state.pending():
            await asyncio.sleep(0.01)
        elapsed = loop.time() - start
        await flusher.stop()
        return elapsed

    elapsed = run(scenario())
    # 40 puts at 10/s with a burst of 10: at least (40 - 10) / 10 = 3 s
    assert rig.swarm.puts == 40 and 2.7 < elapsed < 6


def test_backlog_flush_is_paced_and_live_readings_are_still_answered(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    rig.swarm.available = False  # an outage builds a backlog
    for _ in range(40):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    assert rig.state.pending() == 160
    rig.swarm.available = True

    async def scenario() -> tuple[int, float]:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(flush_rate_per_s=20))
        flusher.start()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.3)
        t, frame, _ = board.fp()
        started = loop.time()
        await rig.bridge.answer_fp(rig.bridge.admit(t, frame))
        answer_s = loop.time() - started
        await asyncio.sleep(1.0 - 0.3)
        await flusher.stop()
        return rig.swarm.puts, answer_s

    stored, answer_s = run(scenario())
    # one second of flushing at 20/s with a burst of 20: about 40 puts, never the whole backlog
    assert 20 <= stored <= 45 and rig.state.pending() == 160 - stored
    assert answer_s < 0.5


def test_topics_are_parsed_once_per_topic_and_bad_ones_refused_every_time(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Bridge._parse_topic / _summary_topic remember valid topics only, bounded (TOPIC_CACHE)."""
    from qis_gateway import bridge as bridge_module

    parsed: list[str] = []
    real = bridge_module.parse_topic
    monkeypatch.setattr(bridge_module, "parse_topic", lambda name: parsed.append(name) or real(name))
    rig = make_rig(tmp_path)
    board = rig.board()
    for _ in range(3):
        t, frame, _seq = board.fp()
        answer(rig, t, frame)
    assert parsed == [board.topic("fp")]  # three frames, one parse
    assert [p[0] for p in rig.published] == [board.topic("summary")] * 3
    elsewhere = board.topic("fp").replace("site-a", "site-b")  # a valid topic of another site: kept, refused
    bad = "qis/v1/site-a/pump 01/fp"
    for _ in range(2):
        assert rig.bridge.admit(elsewhere, board.fp()[1]).reason == "site"
        assert rig.bridge.admit(bad, board.fp()[1]).reason == "topic"
    assert parsed.count(bad) == 2 and parsed.count(elsewhere) == 1  # a refused topic is never kept
    monkeypatch.setattr(bridge_module, "TOPIC_CACHE", 4)
    for i in range(10):
        rig.bridge.admit("qis/v1/site-a/pump-%02d/fp" % i, b"x" * 40)
    assert len(rig.bridge._topics) <= 4
