"""Deploy over a serial port through mpremote, against a pty board whose code runs on the unix port;
NotMicroPython, port errors and the console monitor."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from qis_firmware.cli import main as cli_main
from qis_firmware.deploy import MANIFEST, deploy
from qis_firmware.errors import NotMicroPython
from qis_firmware.mpremote_adapter import SerialTarget
from qis_firmware.serialport import monitor
from support.micropython import run_micropython

from .fakeboard import PtyBoard
from .test_deploy import qis_only, write_config


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_deploy_over_mpremote_to_a_pty_board_then_changed_only(tmp_path: Path) -> None:
    flash_root = tmp_path / "flash"
    config = write_config(tmp_path)
    with PtyBoard(flash_root) as board:
        target = SerialTarget(board.port, raw_repl_timeout_s=5)
        try:
            result = deploy(target, config, sources=qis_only())
        finally:
            target.close()
        assert result.mpy == "v6.3 (x64)"  # read from the board's sys.implementation._mpy
        assert wait_for(lambda: board.resets == 1), "machine.reset() was not sent"
        assert (flash_root / "qis" / "schema.mpy").read_bytes()[:2] == b"M\x06"
        # the watchdog (machine.WDT, mocked) was fed before every file written
        assert int((flash_root / ".wdt_feeds").read_text()) > len(result.copied)
        assert json.loads((flash_root / MANIFEST).read_text())["files"]["device.json"]

        target = SerialTarget(board.port, raw_repl_timeout_s=5)
        try:
            again = deploy(target, config, sources=qis_only())
        finally:
            target.close()
        assert again.copied == []
        assert wait_for(lambda: board.resets == 2), "the board was left interrupted in the raw REPL"
        assert board.soft_resets == 2  # each connection interrupts and soft-resets the board first

    out = run_micropython("import qis.topics\nprint(qis.topics.__file__)\n"
                          "print(qis.topics.topic('site-a', 'pump-01', 'fp'))", extra_path=[flash_root])
    assert out.split() == [str(flash_root / "qis" / "topics.mpy"), "qis/v1/site-a/pump-01/fp"]


def test_cli_deploy_over_a_pty_board(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    with PtyBoard(tmp_path / "flash") as board:
        rc = cli_main(["deploy", "--port", board.port, "--config", str(config), "--dry-run"])
        out = capsys.readouterr().out
        assert rc == 0 and "would copy qis/schema.mpy" in out and "bytecode v6.3" in out
        assert not (tmp_path / "flash" / "qis").exists()
        assert wait_for(lambda: board.resets == 1)  # its program, interrupted by the read, restarts


def test_board_without_micropython_is_reported(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    with PtyBoard(tmp_path / "flash", mode="other") as board:
        t0 = time.monotonic()
        rc = cli_main(["deploy", "--port", board.port, "--config", str(config), "--raw-repl-timeout", "1"])
        elapsed = time.monotonic() - t0
        err = capsys.readouterr().err
    assert rc == 1 and elapsed < 10
    assert "not with a MicroPython REPL" in err and "qis-device flash" in err
    with PtyBoard(tmp_path / "flash2", mode="other") as board, pytest.raises(NotMicroPython):
        SerialTarget(board.port, raw_repl_timeout_s=0.5)


def test_deploy_to_missing_port(tmp_path: Path, capsys) -> None:
    rc = cli_main(["deploy", "--port", str(tmp_path / "ttyACM3"), "--config", str(write_config(tmp_path))])
    assert rc == 2 and "ttyACM3 does not exist" in capsys.readouterr().err


def test_monitor_shows_the_console(tmp_path: Path) -> None:
    sink = io.BytesIO()
    with PtyBoard(tmp_path / "flash", mode="other", chatter=b"qis: reading 7 sent\r\n") as board:
        copied = monitor(board.port, duration_s=0.7, out=sink)
    assert copied > 0 and b"qis: reading 7 sent" in sink.getvalue()


def test_monitor_missing_port(tmp_path: Path, capsys) -> None:
    rc = cli_main(["monitor", "--port", str(tmp_path / "ttyUSB5"), "--seconds", "0.1"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_bad_config_is_reported_before_the_board_is_interrupted(tmp_path: Path, capsys) -> None:
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"site": "site-a", "device": "pump-01", "schema": "machine_health.json"}))
    with PtyBoard(tmp_path / "flash") as board:
        rc = cli_main(["deploy", "--port", board.port, "--config", str(config)])
        assert rc == 2 and "missing secret; missing broker.host" in capsys.readouterr().err
        assert board.commands == [] and board.soft_resets == 0
