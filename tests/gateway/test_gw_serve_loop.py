"""Gateway.serve takes frames already waiting without a task per batch, yet lets the answer workers run
between batches, and still stops on request when nothing arrives."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from qis_gateway.service import Gateway


class _Mqtt:
    def __init__(self, batches: int) -> None:
        self.left = batches
        self.waited = 0

    def take_nowait(self, max_n: int) -> list[int]:
        if self.left:
            self.left -= 1
            return [self.left]
        return []

    async def next_batch(self, max_n: int) -> list[int]:
        self.waited += 1
        await asyncio.Event().wait()  # nothing more arrives
        return []


def test_waiting_frames_are_taken_at_once_and_the_workers_still_run() -> None:
    async def run() -> tuple[list[tuple[int, int]], int]:
        stop = asyncio.Event()
        ticks = [0]
        handled: list[tuple[int, int]] = []

        async def worker() -> None:  # stands for an answer worker: it must run between batches
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        async def handle(batch: list[int]) -> None:
            handled.append((batch[0], ticks[0]))  # handle itself never yields, as Intake.handle need not

        mqtt = _Mqtt(50)
        gw = SimpleNamespace(_stop=stop, mqtt=mqtt, intake=SimpleNamespace(handle=handle))
        work = asyncio.get_running_loop().create_task(worker())
        serving = asyncio.get_running_loop().create_task(Gateway.serve(gw))  # type: ignore[arg-type]
        while mqtt.waited == 0:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(serving, 5)  # stops although no frame arrives
        work.cancel()
        return handled, mqtt.waited

    handled, waited = asyncio.run(run())
    assert [seq for seq, _ in handled] == list(range(49, -1, -1))
    assert waited == 1  # the 50 waiting batches were taken without waiting
    ticks = [t for _, t in handled]
    assert all(b > a for a, b in zip(ticks, ticks[1:], strict=False))  # the worker ran between every two batches
