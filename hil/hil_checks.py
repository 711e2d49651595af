"""Assertions on what the observers saw: counts and order, never log text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from qis_gateway.harness.observer import BoardLog
from qis_gateway.harness.system import SIM_OUTCOMES, BoardProc, LocalSystem

# Scenarios that make sense on both swarm engines run on both (issue 9).
BACKENDS = ["kademlia", pytest.param("opendht", marks=pytest.mark.opendht)]


def board_log(system: LocalSystem, board: BoardProc) -> BoardLog:
    return system.observer_for(board).snapshot().get((board.site, board.device), BoardLog())


def unique_in_order(seqs: list[int]) -> list[int]:
    return list(dict.fromkeys(seqs))  # dicts keep insertion order: first arrivals, duplicates dropped


def readings(system: LocalSystem, board: BoardProc) -> list[int]:
    """The board's fp sequence numbers in first-arrival order (broker redeliveries folded)."""
    return unique_in_order([seq for seq, _ in board_log(system, board).fp])


def answered(system: LocalSystem, board: BoardProc) -> set[int]:
    return {body.get("re") for body, _ in board_log(system, board).summaries}


def truth_of(fields: dict | None) -> str | None:
    if not fields:
        return None
    return SIM_OUTCOMES["labels"].get(fields.get(SIM_OUTCOMES["field"]), "observed")


def assert_every_reading_answered(system: LocalSystem, board: BoardProc, expected: int) -> None:
    seqs = readings(system, board)
    assert len(seqs) == expected, "%s sent %d readings, expected %d" % (board.device, len(seqs), expected)
    assert seqs == sorted(seqs), "%s readings out of order: %s" % (board.device, seqs)
    missing = set(seqs) - answered(system, board)
    assert not missing, "%s: readings %s got no summary" % (board.device, sorted(missing))


def wait_answered(system: LocalSystem, boards: list[BoardProc], expected: int, timeout_s: float) -> bool:
    obs = system.observers[boards[0].gateway]

    def done() -> bool:
        return all(len(readings(system, b)) == expected and set(readings(system, b)) <= answered(system, b)
                   for b in boards)

    return obs.wait_until(done, timeout_s)


def assert_boards_finish(system: LocalSystem, boards: list[BoardProc] | None = None, timeout_s: float = 120) -> None:
    """Every board process exits 0; otherwise fail with the tail of each failed board's log."""
    boards = system.boards if boards is None else boards
    codes = system.wait_boards(timeout_s, boards)
    failed = {d: c for d, c in codes.items() if c != 0}
    assert not failed, "boards failed %s:\n%s" % (failed, "\n".join(
        "--- %s ---\n%s" % (d, system.procs.log_text("board-" + d)[-1500:]) for d in failed))


def outcomes_stored(system: LocalSystem, gateway: int, expected: int) -> Callable[[], bool]:
    """A predicate: the gateway reports at least `expected` packets stored and nothing left in its outbox."""
    def done() -> bool:
        try:
            status = system.gateway_status(gateway)
        except OSError:  # restarting
            return False
        return status["outcomes_stored"] >= expected and status["queue_depth"] == 0
    return done
