"""Group commit (intake.py): a batch of frames costs one commit per SQLite file, PUBACKs follow the commits,
and a gateway SIGKILLed in the middle of a burst accepts no seq twice and loses no acknowledged outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qis_gateway.bridge import Admitted
from qis_gateway.intake import Intake
from qis_gateway.mqtt_client import Incoming
from qis_gateway.outbox import StateDB
from qis_gateway.registry import Registry, board_password
from support.broker import free_port, mosquitto_path

from .helpers import Board, BoardClient, SecureBroker, make_rig
from .test_gw_process import get_json, wait


def incoming(item: tuple[str, bytes, int], mid: int) -> Incoming:
    return Incoming(item[0], item[1], 1, mid, False, False, time.perf_counter())


def test_a_batch_is_one_commit_per_file_and_acked_only_once_durable(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    batch: list[Incoming] = []
    for i in range(20):  # each fp followed by its outcome: the outcome must see its reading in the same batch
        topic_name, frame, seq = board.fp(temperature_c=50 + i)
        batch.append(incoming((topic_name, frame, seq), len(batch) + 1))
        batch.append(incoming(board.outcome(seq, "ok"), len(batch) + 1))
    statements: dict[str, list[str]] = {"state": [], "registry": []}
    rig.state._db.set_trace_callback(statements["state"].append)
    rig.registry._db.set_trace_callback(statements["registry"].append)
    outside = StateDB(rig.state.path)  # another connection sees only what is committed
    outside_registry = Registry(rig.registry.db_path)
    acked: list[tuple[int, int, int]] = []
    answered: list[Admitted] = []

    def ack(msg: Incoming) -> None:
        acked.append((msg.mid, len(outside.due(time.time() + 1, limit=1000)),
                      outside_registry.get(board.device).last_seq))  # type: ignore[union-attr]

    async def answer(admitted: Admitted, received_s: float) -> None:
        answered.append(admitted)

    intake = Intake(rig.bridge, rig.registry, rig.state, rig.metrics, ack, answer, asyncio.Event())
    asyncio.run(intake.handle(batch))
    commits = {name: sum(1 for s in stmts if s.strip().upper() == "COMMIT") for name, stmts in statements.items()}
    assert commits == {"state": 1, "registry": 1}
    assert [a[0] for a in acked] == list(range(1, 41))
    # every ack saw all 20 outcomes' packets (4 levels each) and the last seq durable in the other files
    assert {(a[1], a[2]) for a in acked} == {(80, board.seq)}
    assert len(answered) == 20 and all(a.kind == "fp" and a.outcome == "accepted" for a in answered)
    outside.close()
    outside_registry.close()
    rig.close()


def test_a_failed_commit_rolls_back_and_retries_the_batch(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    batch = [incoming(board.fp(temperature_c=50 + i), i + 1) for i in range(5)]
    acked: list[int] = []
    real_batch = rig.registry.batch
    failures = [1]

    class FailingOnce:
        def __enter__(self) -> None:
            self.inner = real_batch()
            self.inner.__enter__()

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type is None and failures:
                failures.pop()
                self.inner.__exit__(sqlite3.OperationalError, None, None)
                raise sqlite3.OperationalError("disk I/O error")
            self.inner.__exit__(exc_type, *rest)

    rig.registry.batch = FailingOnce  # type: ignore[method-assign]

    async def answer(admitted: Admitted, received_s: float) -> None:
        pass

    intake = Intake(rig.bridge, rig.registry, rig.state, rig.metrics, lambda m: acked.append(m.mid), answer,
                    asyncio.Event())
    asyncio.run(intake.handle(batch))
    assert acked == [1, 2, 3, 4, 5]  # acknowledged once, after the retry succeeded
    assert rig.registry.get(board.device).last_seq == 5  # type: ignore[union-attr]
    assert rig.metrics.registry.get_sample_value("qis_gateway_rejections_total", {"reason": "replay"}) is None
    rig.close()


@pytest.mark.slow
@pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")
def test_sigkill_in_a_burst_accepts_no_seq_twice_and_loses_no_acked_outcome(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    with Registry(data / "registry.sqlite") as reg:
        board = Board("site-a", "pump-01", reg.add("pump-01", "site-a").secret)
    broker = SecureBroker(data, data / "registry.sqlite")
    metrics_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([  # no swarm peer: outcome rows are queued or stored locally; we count both
        "[gateway]", 'data_dir = "%s"' % data,
        "[mqtt]", "port = %d" % broker.port, 'username = "qis-gateway"', 'client_id = "gw-burst-test"',
        "reconnect_min_s = 0.1", "reconnect_max_s = 1.0",
        "[swarm]", 'listen = "127.0.0.1:0"',
        "[outbox]", "retry_min_s = 60", "retry_max_s = 60",
        "[metrics]", 'listen = "127.0.0.1:%d"' % metrics_port, ""]))
    env = dict(os.environ, QIS_MQTT_PASSWORD="gw-pass")
    gw_cmd = [sys.executable, "-m", "qis_gateway.cli", "run", "--config", str(config)]

    def start_gateway() -> subprocess.Popen[bytes]:
        with open(tmp_path / "gateway.log", "ab") as out:
            p = subprocess.Popen(gw_cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait(lambda: get_json(metrics_port, "/health")["status"] in ("ok", "degraded"), 30, "gateway up")
        return p

    def accepted() -> float:
        text = get_json(metrics_port, "/status")  # a lone gateway stores locally: queued + stored
        return text["queue_depth"] + text["outcomes_stored"]

    gw = start_gateway()
    client = BoardClient(board, "127.0.0.1", broker.port, board_password(board.secret))
    pairs = 300
    try:
        infos = []
        for i in range(pairs):  # a burst: fp then its outcome, QoS 1, not waiting for acks
            t, frame, seq = board.fp(temperature_c=40 + i % 50)
            infos.append(client.client.publish(t, frame, qos=1))
            t, frame, _ = board.outcome(seq, "ok")
            infos.append(client.client.publish(t, frame, qos=1))
        wait(lambda: accepted() >= 4 * 40, 30, "part of the burst admitted")
        os.kill(gw.pid, signal.SIGKILL)  # mid-burst: batches committed, being committed and not yet read
        gw.wait(10)
        for info in infos:
            info.wait_for_publish(10)
        gw = start_gateway()
        wait(lambda: accepted() == 4 * pairs, 60, "every outcome queued after the restart")
        # no frame of the burst refused (a replay would mean a seq accepted twice); "busy" only skips a summary
        assert [e for e in client.got["error"] if e["code"] != "busy"] == []
        # the seq high-water mark survived: an old seq with new content is a replay
        replay = Board(board.site, board.device, board.secret, seq=pairs)
        client.send(replay.fp(temperature_c=10))
        wait(lambda: any(e["code"] == "replay" for e in client.got["error"]), 15, "replay refused")
        assert gw.send_signal(signal.SIGTERM) is None and gw.wait(30) == 0
        state = StateDB(data / "state.sqlite")
        rows = state._db.execute("SELECT COUNT(*), COUNT(DISTINCT device || '/' || seq || '/' || level)"
                                 " FROM outbox").fetchone()
        kinds = dict(state._db.execute("SELECT kind, COUNT(*) FROM frames GROUP BY kind").fetchall())
        state.close()
        assert rows == (4 * pairs, 4 * pairs)
        assert kinds == {"fp": pairs, "outcome": pairs}  # every frame of the burst admitted once, none refused
        with Registry(data / "registry.sqlite") as reg:
            assert reg.get(board.device).last_seq == 2 * pairs  # type: ignore[union-attr]
    finally:
        client.close()
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        broker.kill()




def test_an_fp_in_a_batch_takes_no_savepoint_and_its_rows_land_or_roll_back_together(tmp_path: Path) -> None:
    """StateDB.record_fp inside a batch writes its two rows without a savepoint of its own (the batch's
    transaction is the unit); alone it is still one transaction; odd input fails before either write."""
    state = StateDB(tmp_path / "state.sqlite")
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    fields = {"schema": "s/1", "machine_class": "pump"}

    def rows(seq: int) -> tuple[int, int]:
        return (state._db.execute("SELECT count(*) FROM frames WHERE seq = ?", (seq,)).fetchone()[0],
                state._db.execute("SELECT count(*) FROM readings WHERE seq = ?", (seq,)).fetchone()[0])

    with state.batch():
        state.record_fp("pump-1", 1, b"d" * 32, "s/1", fields, [1, -2], 1.0)
    assert not any(s.startswith("SAVEPOINT") for s in statements)
    assert rows(1) == (1, 1)
    statements.clear()
    state.record_fp("pump-1", 2, b"d" * 32, "s/1", fields, [1, -2], 1.0)  # alone: its own transaction
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT" and rows(2) == (1, 1)
    with pytest.raises(TypeError), state.batch():
        state.record_fp("pump-1", 3, b"d" * 32, "s/1", {"schema": object()}, [1], 1.0)  # type: ignore[dict-item]
    with pytest.raises(sqlite3.OperationalError), state.batch():
        state.record_fp("pump-1", 4, b"d" * 32, "s/1", fields, [1], 1.0)
        state._db.execute("INSERT INTO no_such_table VALUES (1)")  # a failure later in the batch
    assert rows(3) == (0, 0) and rows(4) == (0, 0)
    state.close()
