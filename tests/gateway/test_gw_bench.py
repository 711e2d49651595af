"""The gateway's benchmarks and diagnostics that live in bench/ (outside the installed package): the synthesis
path bench runs the gateway's own Evidence path, and bench/memtrace.py runs a gateway with tracing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.broker import free_port

REPO = Path(__file__).resolve().parents[2]


def test_synthesis_bench_measures_the_gateway_path(tmp_path: Path) -> None:
    out = tmp_path / "synthesis.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_synthesis.py"), "--packets", "5,60",
                           "--repeat", "3", "--json", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    assert [r["packets"] for r in result["runs"]] == [5, 60]
    for r in result["runs"]:
        assert r["summary"]["same_as_parts"] and r["summary"]["n"] > 0
        assert all(r[k] > 0 for k in ("path_ms", "lookup_ms", "columns_ms", "synthesis_ms", "encode_ms"))
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "bench_synthesis.py"), "--packets", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--packets" in bad.stderr


def test_memtrace_runs_a_gateway_and_snapshots_on_sigusr1(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "%s"' % (tmp_path / "data"),
        "[mqtt]", "port = %d" % free_port(),  # nobody listens: the gateway keeps reconnecting, which is fine here
        "[swarm]", 'listen = "127.0.0.1:0"',
        "[metrics]", 'listen = ""', ""]))
    trace = tmp_path / "trace"
    env = dict(os.environ, QIS_MEMTRACE_DIR=str(trace), QIS_MEMTRACE_FRAMES="1")
    log = open(tmp_path / "gw.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "memtrace.py"), "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while b"gateway started" not in (tmp_path / "gw.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gw.log").read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGUSR1)
        while not (trace / "snapshot-1.json").exists():
            assert time.monotonic() < deadline, (tmp_path / "gw.log").read_text()
            time.sleep(0.1)
        info = json.loads((trace / "snapshot-1.json").read_text())
        assert info["rss_kib"] > 0 and info["traced_bytes"] > 0 and (trace / "snapshot-1.tracemalloc").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
