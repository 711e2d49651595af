"""Shedding an fp before its admission under sustained overload (early_shed.py, intake.py): only an
authentic fp with a fresh seq, nothing stored, acknowledged and told busy; everything else admitted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from qis_gateway.bridge import Admitted
from qis_gateway.early_shed import authentic_fresh
from qis_gateway.intake import Intake
from qis_gateway.mqtt_client import Incoming

from .helpers import make_rig


def incoming(item: tuple[str, bytes, int], mid: int) -> Incoming:
    return Incoming(item[0], item[1], 1, mid, False, False, time.perf_counter())


def test_only_an_authentic_fresh_fp_qualifies(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    hit = authentic_fresh(rig.registry, t, frame)
    assert hit is not None and hit[0].device_id == board.device and hit[1] == seq
    assert authentic_fresh(rig.registry, t, frame[:-1] + bytes([frame[-1] ^ 1])) is None  # bad tag
    assert authentic_fresh(rig.registry, t.replace(board.site, "other"), frame) is None  # wrong site
    assert rig.bridge.admit(t, frame).outcome == "accepted"
    assert authentic_fresh(rig.registry, t, frame) is None  # seq no longer fresh: replay/duplicate rules
    t, frame, _ = board.outcome(seq, "ok")
    assert authentic_fresh(rig.registry, t, frame) is None  # outcomes are never shed
    rig.close()


class Overloaded:
    """An AnswerQueue stand-in that is overloaded and records what it was told to shed."""

    def __init__(self) -> None:
        self.shed: list[Admitted] = []

    def overloaded(self, received_s: float) -> bool:
        return True

    def shed_unadmitted(self, admitted: Admitted) -> None:
        self.shed.append(admitted)


def test_overloaded_intake_sheds_fps_unadmitted_and_admits_the_rest(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq0 = board.fp()
    assert rig.bridge.admit(t, frame).outcome == "accepted"
    batch = [incoming(board.outcome(seq0, "ok"), 1), incoming(board.fp(), 2), incoming(board.fp(), 3)]
    acked: list[int] = []
    answered: list[Admitted] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted)

    answers = Overloaded()
    intake = Intake(rig.bridge, rig.registry, rig.state, rig.metrics, lambda m: acked.append(m.mid), answer,
                    asyncio.Event(), answers=answers)  # type: ignore[arg-type]
    asyncio.run(intake.handle(batch))
    assert acked == [1, 2, 3] and answered == []
    assert [(a.device.device_id, a.body["seq"]) for a in answers.shed] == [  # type: ignore[union-attr,index]
        (board.device, seq0 + 2), (board.device, seq0 + 3)]
    assert rig.state.pending() == 4  # the outcome was admitted: its 4 level packets queued
    assert rig.registry.get(board.device).last_seq == seq0 + 1  # type: ignore[union-attr]  # shed: not consumed
    assert rig.state.reading(board.device, seq0 + 2) is None
    rig.close()
