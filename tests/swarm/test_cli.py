"""qis-swarm CLI: argument checks, `node` processes (SIGTERM = graceful leave; SIGKILL'd subset), simulate.
(The UDP benchmark left the package: tests/swarm_backends/test_bench_udp.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.cli import build_parser, main
from qis_gateway.swarm.core.config import SwarmConfig

CONFIG = SwarmConfig(rate_limit_key="addr")


def test_parser_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["node", "--listen", "nohost", "--data", "d"],
        ["node", "--listen", "127.0.0.1:99999", "--data", "d"],
        ["node", "--listen", "127.0.0.1:0"],
        ["simulate", "--nodes", "0", "--lookups", "1"],
        ["simulate", "--nodes", "10", "--lookups", "1", "--loss", "1.5"],
        ["bench", "--nodes", "8", "--values", "1", "--lookups", "1"],  # the benchmark is not shipped
    ):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
    args = build_parser().parse_args(
        ["node", "--listen", "127.0.0.1:0", "--bootstrap", "10.0.0.1:4000", "--bootstrap", "[::1]:5", "--data", "d"]
    )
    assert args.listen == ("127.0.0.1", 0) and args.bootstrap == [("10.0.0.1", 4000), ("::1", 5)]


async def _spawn_node(data: Path, bootstrap: tuple[str, int]) -> tuple[asyncio.subprocess.Process, tuple[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qis_gateway.swarm.cli", "--log-level", "WARNING", "node",
        "--listen", "127.0.0.1:0", "--bootstrap", "%s:%d" % bootstrap, "--data", str(data),
        "--rate-limit-key", "addr",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    doc = json.loads(line)
    assert doc["event"] == "listening" and len(doc["node_id"]) == 64
    return proc, (doc["address"][0], doc["address"][1])


def test_node_processes_sigkilled_subset_leaves_values_findable_and_sigterm_leaves(tmp_path: Path) -> None:
    async def main_() -> None:
        seed = UdpSwarm(("127.0.0.1", 0), tmp_path / "seed", config=CONFIG)
        await seed.start()
        procs: list[asyncio.subprocess.Process] = []
        reader = None
        try:
            for i in range(6):
                proc, _ = await _spawn_node(tmp_path / ("p%d" % i), seed.address)
                procs.append(proc)
            reader = UdpSwarm(("127.0.0.1", 0), tmp_path / "reader", [seed.address], config=CONFIG)
            await reader.start()
            keys = [hashlib.sha256(b"k%d" % i).digest() for i in range(4)]
            for i, key in enumerate(keys):
                assert await seed.put(key, b"a%d" % i) >= 3
                assert await reader.put(key, b"b%d" % i) >= 3
            for proc in procs[:2]:  # crash-stop a third of the node processes: no goodbye
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
            for i, key in enumerate(keys):
                r = await reader.get(key)
                assert sorted(r.values) == [b"a%d" % i, b"b%d" % i]
                assert r.elapsed_ms < 5000
            # SIGTERM = graceful leave, clean exit, final status line
            victim = procs[2]
            victim.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(victim.communicate(), 20)
            assert victim.returncode == 0
            assert json.loads(out.decode().strip().splitlines()[-1])["event"] == "stopped"
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if reader is not None:
                await reader.stop(graceful=False)
            await seed.stop(graceful=False)

    asyncio.run(asyncio.wait_for(main_(), 120))


def test_simulate_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--nodes", "60", "--lookups", "30", "--seed", "2", "--loss", "0.1", "--json"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out
    doc = json.loads(out)
    assert doc["nodes"] == 60 and doc["lookups"] == 30 and doc["loss"] == 0.1
    assert 0.9 <= doc["success_rate"] <= 1.0
    for field in ("p50", "p90", "p99", "max"):
        assert doc["hops"][field] >= 0
    assert {"p50", "p99"} <= set(doc["messages"]) and doc["seconds"] > 0


def test_node_reports_a_bad_key_file_and_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "node.key").write_bytes(b"short")
    assert main(["node", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "d")]) == 1
    assert "node.key" in capsys.readouterr().err
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        assert main(["node", "--listen", "127.0.0.1:%d" % port, "--data", str(tmp_path / "e")]) == 1
        assert "in use" in capsys.readouterr().err
    finally:
        busy.close()
