"""AnswerQueue: fps answered oldest first by a fixed number of workers; overload shed explicitly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from qis_gateway.answers import AnswerQueue
from qis_gateway.bridge import Admitted


def fp(seq: int) -> Admitted:
    return Admitted("accepted", "fp", None, {"seq": seq})


def test_overload_is_shed_explicitly_and_answers_keep_a_bounded_wait() -> None:
    answered: list[tuple[int, float]] = []
    shed: list[tuple[int, str]] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append((admitted.body["seq"], time.perf_counter() - received_s))  # type: ignore[index]
        await asyncio.sleep(0.05)

    async def run() -> AnswerQueue:
        q = AnswerQueue(answer, lambda a, reason, why: shed.append((a.body["seq"], why)),  # type: ignore[index]
                        workers=2, max_wait_s=0.2, max_pending=50)
        q.start()
        now = time.perf_counter()
        for seq in range(60):  # 60 at once: 2 workers x 50 ms answer 2 per 50 ms
            q.submit(fp(seq), now)
        await asyncio.sleep(0.6)
        await q.stop(1.0)
        return q

    q = asyncio.run(run())
    seqs = [s for s, _ in answered]
    assert seqs == sorted(seqs) and seqs[:2] == [0, 1]  # oldest first
    assert 4 <= len(answered) <= 14  # what 2 workers answer within the 0.2 s bound (loaded machines: slack)
    assert all(waited <= 0.2 + 0.1 for _, waited in answered)
    assert len(answered) + len(shed) == 60 and q.shed == len(shed)  # every fp answered or told "busy"
    assert sum(1 for _, why in shed if "already wait" in why) == 10  # beyond max_pending: at once
    assert any("waited" in why for _, why in shed)


def test_under_capacity_nothing_is_shed() -> None:
    answered: list[int] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted.body["seq"])  # type: ignore[index]
        await asyncio.sleep(0.001)

    async def run() -> int:
        q = AnswerQueue(answer, lambda a, reason, why: None, workers=4, max_wait_s=1.0)
        q.start()
        for seq in range(100):
            q.submit(fp(seq), time.perf_counter())
            await asyncio.sleep(0.002)
        await q.stop(2.0)
        return q.shed

    assert asyncio.run(run()) == 0 and answered == list(range(100))


def test_an_answer_that_misses_its_deadline_is_shed_not_published_late() -> None:
    shed: list[str] = []
    finished: list[int] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        await asyncio.sleep(0.5 if admitted.body["seq"] == 1 else 0.01)  # type: ignore[index]
        finished.append(admitted.body["seq"])  # type: ignore[index]

    async def run() -> None:
        q = AnswerQueue(answer, lambda a, reason, why: shed.append(reason + ": " + why), workers=2,
                        max_wait_s=0.1, deadline_s=0.2)
        q.start()
        q.submit(fp(1), time.perf_counter())
        q.submit(fp(2), time.perf_counter())
        await asyncio.sleep(0.7)
        await q.stop(1.0)

    asyncio.run(run())
    assert finished == [2] and len(shed) == 1 and shed[0].startswith("deadline: no answer within")


def test_sustained_overload_is_shed_on_arrival_and_answered_fps_wait_about_late_s() -> None:
    answered: list[float] = []
    shed: list[str] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(time.perf_counter() - received_s)
        await asyncio.sleep(0.02)  # 2 workers: ~100 answers/s

    async def run() -> None:
        q = AnswerQueue(answer, lambda a, reason, why: shed.append(reason), workers=2, max_wait_s=0.4,
                        late_s=0.15)
        q.start()
        for seq in range(300):  # ~3x capacity for ~1 s
            q.submit(fp(seq), time.perf_counter())
            await asyncio.sleep(1 / 300)
        await q.stop(2.0)

    asyncio.run(run())
    assert "late" in shed and len(answered) + len(shed) == 300
    late_phase = answered[len(answered) // 2:]  # once the queue has been backlogged for max_wait_s
    # The worker sheds what waited over max_wait_s (0.4 s) and the answer starts a scheduling step later,
    # so the bound holds up to that step (on a loaded CI runner one answer started at 0.400004 s).
    assert max(late_phase) < 0.4 + 0.05
    assert sorted(late_phase)[len(late_phase) // 2] < 0.3  # most wait far less: the excess was shed on arrival
    assert shed.count("late") > 2 * shed.count("waited")  # rather than after queueing (here ~110 against ~35)


def test_a_burst_is_not_shed_on_arrival() -> None:
    shed: list[str] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        await asyncio.sleep(0.01)

    async def run() -> None:
        q = AnswerQueue(answer, lambda a, reason, why: shed.append(reason), workers=2, max_wait_s=1.0,
                        late_s=0.05)
        q.start()
        for seq in range(100):  # arrives within a fraction of max_wait_s; answered in ~0.5 s
            q.submit(fp(seq), time.perf_counter())
            await asyncio.sleep(0.002)
        await q.stop(3.0)

    asyncio.run(run())
    assert shed == []


def test_frames_reaching_the_loop_late_are_shed_on_arrival_until_they_arrive_in_time() -> None:
    """The wait in front of the queue (a loop behind the broker): the queue looks empty, but every fp
    already waited longer than late_s. After late_s of that, such fps are shed on arrival; fps that
    reach the loop in time are answered at once again."""
    answered: list[int] = []
    shed: list[tuple[int, str]] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted.body["seq"])

    async def run() -> None:
        q = AnswerQueue(answer, lambda a, reason, why: shed.append((a.body["seq"], reason)), workers=2,
                        max_wait_s=1.0, late_s=0.1, lagging_frames=5)
        q.start()
        for seq in range(40):  # each reaches the loop 0.5 s after it arrived, for ~0.4 s
            q.submit(fp(seq), time.perf_counter() - 0.5)
            await asyncio.sleep(0.01)
        for seq in range(40, 50):  # the loop has caught up
            q.submit(fp(seq), time.perf_counter())
            await asyncio.sleep(0.01)
        await q.stop(2.0)

    asyncio.run(run())
    shed_seqs = {seq for seq, _ in shed}
    assert {reason for _, reason in shed} == {"late"}
    assert 0 in answered and shed_seqs and min(shed_seqs) >= 5  # not before late_s of lagging frames
    assert set(range(40, 50)) <= set(answered)  # in time again: answered
    assert len(answered) + len(shed) == 50


def recording_queue(lagging_frames: int) -> tuple[AnswerQueue, list[int], list[int]]:
    """A queue whose loop lags once frames reach it over 0.05 s late for 0.1 s: (queue, answered, shed)."""
    answered: list[int] = []
    shed: list[int] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted.body["seq"])  # type: ignore[index]

    q = AnswerQueue(answer, lambda a, reason, why: shed.append(a.body["seq"]),  # type: ignore[index]
                    workers=2, max_wait_s=1.0, late_s=0.1, intake_late_s=0.05, lagging_frames=lagging_frames)
    return q, answered, shed


async def feed(q: AnswerQueue, seqs: range, late_by: Callable[[int], float], gap_s: float = 0.01) -> None:
    """Submit each seq as if it had reached paho late_by(seq) seconds before it reaches the loop."""
    for seq in seqs:
        q.submit(fp(seq), time.perf_counter() - late_by(seq))
        await asyncio.sleep(gap_s)


def test_a_lagging_loop_sheds_late_frames_until_frames_reach_it_in_time_for_late_s() -> None:
    """Once lagging, one frame in time does not end it (that let every frame in again); frames that reach
    the loop in time are answered meanwhile, and late_s of them in a row ends it."""
    q, answered, shed = recording_queue(lagging_frames=5)

    async def run() -> bool:
        q.start()
        await feed(q, range(30), lambda seq: 0.5)  # 0.3 s of frames reaching the loop 0.5 s late: lagging
        await feed(q, range(30, 50), lambda seq: 0.5 if seq % 2 else 0.0)  # in time and late, alternating
        still_lagging = q.lagging
        await feed(q, range(50, 70), lambda seq: 0.0)  # 0.2 s of frames in time ends it
        await feed(q, range(70, 71), lambda seq: 0.5)  # late, but the loop is no longer lagging
        await q.stop(2.0)
        return still_lagging

    assert asyncio.run(run())
    assert {s for s in range(31, 50, 2)} <= set(shed)  # the late ones while lagging
    assert {s for s in range(30, 50, 2)} | set(range(50, 71)) <= set(answered)
    assert len(answered) + len(shed) == 71


def test_a_stall_that_delays_a_few_frames_sheds_none() -> None:
    """A loaded machine stalls the loop for a while: the few frames of that time reach it late, but that is
    not overload (fewer than lagging_frames in a row), so they are answered, late, rather than shed."""
    q, answered, shed = recording_queue(lagging_frames=32)

    async def run() -> None:
        q.start()
        await feed(q, range(20), lambda seq: 0.5, gap_s=0.02)  # 0.4 s of frames 0.5 s late, 20 of them
        await q.stop(2.0)

    asyncio.run(run())
    assert shed == [] and answered == list(range(20))
