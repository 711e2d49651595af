"""Start-up faults of `qis-gateway run` (issue 18 point 13): each is one line on stderr and exit 2, never a
traceback. Every case runs the real command as its own process on a gateway directory with one fault."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from qis_gateway.metrics import HttpEndpoint, Metrics

GARBAGE = b"this is not an SQLite database, just bytes " * 100


def _config(tmp: Path, **over: str) -> Path:
    sections = {
        "gateway": {"data_dir": '"%s"' % (tmp / "data")},
        "mqtt": {"port": "1", "reconnect_min_s": "5"},
        "swarm": {"listen": '"127.0.0.1:0"'},
        "metrics": {"listen": '"127.0.0.1:0"'},
    }
    for dotted, value in over.items():
        section, key = dotted.split("__")
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, keys in sections.items():
        lines.append("[%s]" % section)
        lines += ["%s = %s" % (k, v) for k, v in keys.items()]
    path = tmp / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def schema_missing(tmp: Path) -> Path:
    return _config(tmp, gateway__schemas='["nowhere.json"]')


def schema_not_json(tmp: Path) -> Path:
    _write(tmp / "bad.json", b"{not json")
    return _config(tmp, gateway__schemas='["bad.json"]')


def schema_invalid(tmp: Path) -> Path:
    _write(tmp / "odd.json", b'{"schema": 5, "fields": "none"}')
    return _config(tmp, gateway__schemas='["odd.json"]')


def key_garbage(tmp: Path) -> Path:
    _write(tmp / "data" / "gateway.key", b"hello\n")
    return _config(tmp)


def key_short_seed(tmp: Path) -> Path:
    _write(tmp / "data" / "gateway.key", b"qis-ed25519-seed:abcd\n")
    return _config(tmp)


def key_not_text(tmp: Path) -> Path:
    _write(tmp / "data" / "gateway.key", b"\xff\xfe\x00\x01")
    return _config(tmp)


def key_unreadable(tmp: Path) -> Path:
    (tmp / "data" / "gateway.key").mkdir(parents=True)  # a directory: unreadable as a file even for root
    return _config(tmp)


def node_key_wrong_length(tmp: Path) -> Path:
    _write(tmp / "data" / "swarm" / "node.key", b"short")
    return _config(tmp)


def registry_corrupt(tmp: Path) -> Path:
    _write(tmp / "data" / "registry.sqlite", GARBAGE)
    return _config(tmp)


def state_corrupt(tmp: Path) -> Path:
    _write(tmp / "data" / "state.sqlite", GARBAGE)
    return _config(tmp)


def swarm_store_corrupt(tmp: Path) -> Path:
    _write(tmp / "data" / "swarm" / "values.sqlite3", GARBAGE)
    return _config(tmp)


def swarm_published_corrupt(tmp: Path) -> Path:
    _write(tmp / "data" / "swarm" / "published.sqlite3", GARBAGE)
    return _config(tmp)


def data_dir_unwritable(tmp: Path) -> Path:
    _write(tmp / "plain-file", b"x")  # a data_dir below a regular file cannot be made, even by root
    return _config(tmp, gateway__data_dir='"%s"' % (tmp / "plain-file" / "data"))


def metrics_port_in_use(tmp: Path, busy: list[socket.socket]) -> Path:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy.append(s)
    return _config(tmp, metrics__listen='"127.0.0.1:%d"' % s.getsockname()[1])


def swarm_port_in_use(tmp: Path, busy: list[socket.socket]) -> Path:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    busy.append(s)
    return _config(tmp, swarm__listen='"127.0.0.1:%d"' % s.getsockname()[1])


CASES: list[Callable[..., Path]] = [
    schema_missing, schema_not_json, schema_invalid, key_garbage, key_short_seed, key_not_text, key_unreadable,
    node_key_wrong_length, registry_corrupt, state_corrupt, swarm_store_corrupt, swarm_published_corrupt,
    data_dir_unwritable, metrics_port_in_use, swarm_port_in_use,
]


def _run(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "qis_gateway.cli", *extra, "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_start_up_fault_is_one_line_and_exit_2(case: Callable[..., Path], tmp_path: Path) -> None:
    busy: list[socket.socket] = []
    try:
        config = case(tmp_path, busy) if case.__code__.co_argcount == 2 else case(tmp_path)
        quiet = _run(config, "-q")
        loud = _run(config)
    finally:
        for s in busy:
            s.close()
    for done in (quiet, loud):
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 2, done.stderr
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qis-gateway: "), quiet.stderr
    assert loud.stderr.strip().splitlines()[-1] == lines[0]


def test_a_loose_swarm_node_key_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from qis_gateway.swarm import keyfile

    path = tmp_path / "node.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        keyfile.load_or_create(path)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "0644" in line and "chmod 600 %s" % path in line
    caplog.clear()
    path.chmod(0o600)
    keyfile.load_or_create(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def _endpoint(**kw: float) -> HttpEndpoint:
    http = HttpEndpoint(Metrics(), lambda: (True, {"status": "ok"}), lambda: {}, **kw)
    await http.start("127.0.0.1", 0)
    return http


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def test_an_over_long_request_line_gets_431_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        http = await _endpoint()
        port = http.address[1]
        try:
            for request in (b"GET /" + b"a" * 100_000 + b" HTTP/1.0\r\n\r\n",
                            b"GET /metrics HTTP/1.0\r\nX: " + b"b" * 70_000 + b"\r\n\r\n",
                            b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * 500 + b"\r\n"):
                answer = await _get(port, request)
                assert answer.startswith(b"HTTP/1.0 431 "), answer[:80]
            assert (await _get(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200 OK")
            assert http.refused == {"too_long": 3}
        finally:
            await http.stop()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_slow_client_is_cut_off_and_others_still_served() -> None:
    async def main() -> None:
        http = await _endpoint(request_timeout_s=0.5)
        port = http.address[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        try:
            writer.write(b"GET /metrics HTTP/1.0\r\n")
            closed_after = None
            while time.monotonic() - started < 6.0:  # one header line every 0.2 s, never the blank line
                try:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
                try:
                    if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
            assert closed_after is not None and closed_after < 4.0, closed_after
            assert (await _get(port, b"GET /health HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200 OK")
            assert http.refused == {"slow": 1}
        finally:
            writer.close()
            await http.stop()

    asyncio.run(main())
