"""An fp shed under overload is still a stored reading: the outcome its board sends later is accepted
(intake.py admits every fp before answers.py may shed it). Shedding fps before their admission refused
those outcomes `unknown_reading`; a SIGKILL burst test on a loaded machine lost one that way."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from qis_gateway.answers import AnswerQueue
from qis_gateway.bridge import Admitted
from qis_gateway.intake import Intake
from qis_gateway.mqtt_client import Incoming
from support.broker import mosquitto_path

from .helpers import MemorySwarm, make_rig, wait_for
from .test_gw_service import Site, started, stopped


class AlwaysOverloaded(AnswerQueue):
    def overloaded(self, received_s: float) -> bool:
        return True


def incoming(item: tuple[str, bytes, int], mid: int) -> Incoming:
    return Incoming(item[0], item[1], 1, mid, False, False, time.perf_counter())


def test_a_reading_told_busy_still_takes_its_outcome(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    fps = [board.fp() for _ in range(3)]
    shed: list[tuple[int, str]] = []
    answered: list[int] = []
    acked: list[int] = []

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted.body["seq"])  # type: ignore[index]

    async def run() -> None:
        queue = AlwaysOverloaded(answer, lambda a, reason, why: shed.append((a.body["seq"], reason)),  # type: ignore[index]
                                 workers=1)
        queue.start()

        async def submit(admitted: Admitted, received_s: float) -> None:
            queue.submit(admitted, received_s)

        intake = Intake(rig.bridge, rig.registry, rig.state, rig.metrics, lambda m: acked.append(m.mid), submit,
                        asyncio.Event())
        await intake.handle([incoming(item, i) for i, item in enumerate(fps)])
        await intake.handle([incoming(board.outcome(seq, "ok"), 10 + i) for i, (_, _, seq) in enumerate(fps)])
        await queue.stop(1.0)

    asyncio.run(run())
    assert acked == [0, 1, 2, 10, 11, 12] and answered == []
    assert shed == [(seq, "late") for _, _, seq in fps]  # every reading told "busy" ...
    assert rig.state.pending() == 3 * 4  # ... and every outcome accepted: 4 level packets each queued
    assert rig.metrics.rejections.labels("unknown_reading")._value.get() == 0
    rig.close()


@pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")
def test_the_running_gateway_stores_the_outcome_of_a_reading_it_told_busy(tmp_path: Path) -> None:
    """The same through the whole gateway (its own intake and answer-queue wiring) and a real Mosquitto."""
    site = Site(tmp_path / "site", [("pump-01", "site-a")])
    swarm = MemorySwarm()

    async def scenario() -> None:
        gw, task = await started(site.config(), swarm)
        gw.answers.overloaded = lambda received_s: True  # type: ignore[method-assign]  # sustained overload
        board = site.boards["pump-01"]
        client = site.client("pump-01")
        try:
            seqs = [client.send(board.fp(temperature_c=40 + i)) for i in range(3)]
            await wait_for(lambda: len(client.got["error"]) == 3, 20, "three busy answers")
            assert [(e["seq"], e["code"]) for e in client.got["error"]] == [(s, "busy") for s in seqs]
            for s in seqs:
                client.send(board.outcome(s, "ok"))
            await wait_for(lambda: gw.state.stored() == 3 * 4, 20, "the three outcomes stored")
            assert len(client.got["error"]) == 3 and client.got["summary"] == []  # no refusal, no summary
        finally:
            await stopped(gw, task)
            site.close()

    asyncio.run(scenario())
