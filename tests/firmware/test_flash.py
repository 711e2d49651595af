"""`qis-device flash`: esptool invocations per chip (dry run), image checks, rp2, port errors."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from qis_firmware import chips, esptool_adapter, flash
from qis_firmware.cli import main as cli_main
from qis_firmware.errors import FirmwareImageMismatch, NoSuchPort, PortPermissionDenied, UsageError

from .images import CHIP_IDS, esp32_image, esp8266_image, uf2_image
from .test_deploy import write_config

# Offsets from MicroPython's board files and esp8266 tutorial (docs/design.md, MicroPython facts).
EXPECTED = {
    "esp32": ("0x1000", "keep", "keep"),
    "esp32s2": ("0x1000", "keep", "keep"),
    "esp32s3": ("0x0", "keep", "keep"),
    "esp32c3": ("0x0", "keep", "keep"),
    "esp8266": ("0x0", "keep", "detect"),
}


def _image_for(chip: str) -> bytes:
    return esp8266_image() if chip == "esp8266" else esp32_image(CHIP_IDS[chip])


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_dry_run_prints_exact_invocation_per_chip(chip: str, tmp_path: Path, capsys) -> None:
    fw = tmp_path / ("%s fw.bin" % chip)  # a space: the printed line must quote it
    fw.write_bytes(_image_for(chip))
    rc = cli_main(["flash", "--port", "/dev/ttyUSB7", "--chip", chip, "--firmware", str(fw), "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("would run: "))
    argv = shlex.split(line[len("would run: "):])
    offset, mode, size = EXPECTED[chip]
    assert argv == ["esptool", "--chip", chip, "--port", "/dev/ttyUSB7", "--baud", "460800",
                    "--before", "default-reset", "--after", "hard-reset", "write-flash",
                    "--flash-mode", mode, "--flash-size", size, offset, str(fw)]


def test_erase_and_baud_are_part_of_the_invocation(tmp_path: Path) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    plan = flash.plan_flash(port="COM3", chip="esp32", firmware=fw, baud=115200, erase=True, dry_run=True)
    assert plan.argv is not None
    assert plan.argv[plan.argv.index("--baud") + 1] == "115200"
    assert plan.argv.index("--erase-all") < plan.argv.index("0x1000")


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_esptool_accepts_the_arguments(chip: str, tmp_path: Path) -> None:
    """esptool itself parses our argv and only then fails on the (absent) port: no usage error."""
    fw = tmp_path / "fw.bin"
    fw.write_bytes(_image_for(chip))
    argv = esptool_adapter.write_flash_argv(chips.CHIPS[chip], str(tmp_path / "ttyNOPE"), fw, erase=True)
    with pytest.raises(NoSuchPort, match="ttyNOPE"):
        esptool_adapter.run_esptool(argv)


def test_auto_in_dry_run_takes_the_chip_from_the_image_header(tmp_path: Path) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(CHIP_IDS["esp32c3"]))
    plan = flash.plan_flash(port="/dev/ttyACM0", chip="auto", firmware=fw, dry_run=True)
    assert plan.chip == "esp32c3" and plan.argv is not None and "0x0" in plan.argv


def test_auto_dry_run_with_unlabeled_esp8266_image_asks_for_chip(tmp_path: Path, capsys) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp8266_image())
    rc = cli_main(["flash", "--port", "/dev/ttyUSB0", "--chip", "auto", "--firmware", str(fw), "--dry-run"])
    assert rc == UsageError.exit_code
    assert "pass --chip" in capsys.readouterr().err


@pytest.mark.parametrize("image_chip,flash_chip", [("esp32s3", "esp32"), ("esp32", "esp32c3"),
                                                   ("esp32c3", "esp32s2"), ("esp32s2", "esp32s3")])
def test_refuses_image_for_another_chip(image_chip: str, flash_chip: str, tmp_path: Path, capsys) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(CHIP_IDS[image_chip]))
    rc = cli_main(["flash", "--port", "/dev/ttyUSB0", "--chip", flash_chip, "--firmware", str(fw), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2  # bad input: the wrong file for this chip
    assert "built for %s" % chips.CHIPS[image_chip].display in err
    assert "not for %s" % chips.CHIPS[flash_chip].display in err


def test_refuses_app_only_uf2_and_non_esp_files(tmp_path: Path) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0, app_only=True))
    with pytest.raises(FirmwareImageMismatch, match="application-only"):
        flash.plan_flash(port="p", chip="esp32", firmware=fw, dry_run=True)
    fw.write_bytes(uf2_image())
    with pytest.raises(FirmwareImageMismatch, match="UF2"):
        flash.plan_flash(port="p", chip="esp32s3", firmware=fw, dry_run=True)
    fw.write_bytes(b"<!DOCTYPE html><html>download page</html>" + bytes(40))
    with pytest.raises(FirmwareImageMismatch, match="0xE9"):
        flash.plan_flash(port="p", chip="esp8266", firmware=fw, dry_run=True)
    with pytest.raises(UsageError, match="does not exist"):
        flash.plan_flash(port="p", chip="esp32", firmware=tmp_path / "missing.bin", dry_run=True)


def test_esp8266_image_passes_with_a_note_that_the_chip_cannot_be_told(tmp_path: Path) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp8266_image())
    plan = flash.plan_flash(port="p", chip="esp8266", firmware=fw, dry_run=True)
    assert "cannot be checked" in plan.image_note


def test_rp2_explains_the_uf2_copy_and_refuses_esp_images(tmp_path: Path, capsys) -> None:
    fw = tmp_path / "RPI_PICO_W.uf2"
    fw.write_bytes(uf2_image())
    assert cli_main(["flash", "--chip", "rp2", "--firmware", str(fw)]) == 0
    out = capsys.readouterr().out
    assert "BOOTSEL" in out and str(fw) in out and "esptool" not in out.split("\n", 1)[0]
    assert flash.plan_flash(port="", chip="auto", firmware=fw, dry_run=False).chip == "rp2"
    fw.write_bytes(uf2_image(family=0xBFDD4EEE))  # an ESP32-S2 TinyUF2 file
    with pytest.raises(FirmwareImageMismatch, match="not for an RP2040"):
        flash.plan_flash(port="", chip="rp2", firmware=fw)
    fw.write_bytes(esp32_image(0))
    with pytest.raises(FirmwareImageMismatch, match="takes a .uf2"):
        flash.plan_flash(port="", chip="rp2", firmware=fw)


def test_auto_detection_result_is_checked_against_the_image(tmp_path: Path, monkeypatch) -> None:
    """The chip esptool reports (ROM detection needs hardware, so its answer is injected) picks the
    offset, and an image for another chip is refused before anything is written."""
    port = tmp_path / "ttyUSB0"
    port.write_bytes(b"")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(CHIP_IDS["esp32s3"]))
    monkeypatch.setattr(esptool_adapter, "detect_chip", lambda p, baud: "ESP32-S3")
    assert flash.plan_flash(port=str(port), chip="auto", firmware=fw).argv[-2] == "0x0"
    monkeypatch.setattr(esptool_adapter, "detect_chip", lambda p, baud: "ESP32")
    with pytest.raises(FirmwareImageMismatch, match="built for ESP32-S3"):
        flash.plan_flash(port=str(port), chip="auto", firmware=fw)
    monkeypatch.setattr(esptool_adapter, "detect_chip", lambda p, baud: "ESP32-H2")
    with pytest.raises(FirmwareImageMismatch, match="does not flash"):
        flash.plan_flash(port=str(port), chip="auto", firmware=fw)


def test_no_such_port_lists_what_exists(tmp_path: Path, capsys) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    rc = cli_main(["flash", "--port", str(tmp_path / "ttyUSB9"), "--chip", "esp32", "--firmware", str(fw)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "ttyUSB9 does not exist" in err and "Ports present" in err


def _run_unprivileged(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `qis-device ARGS` as a user who may not open root's 0600 'port' (a real EACCES)."""
    cmd = [sys.executable, "-m", "qis_firmware.cli", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop privileges to provoke EACCES")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)


@pytest.mark.parametrize("command", ["flash", "deploy", "monitor"])
def test_permission_denied_gives_the_dialout_hint(command: str) -> None:
    with tempfile.TemporaryDirectory(prefix="qis-perm-") as folder:  # /tmp/pytest-of-root is 0700
        tmp_path = Path(folder)
        tmp_path.chmod(0o755)
        _check_permission_denied(command, tmp_path)


def _check_permission_denied(command: str, tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    port.write_bytes(b"")
    port.chmod(0o600 if os.geteuid() == 0 else 0o000)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    config = write_config(tmp_path)
    for path in (fw, config):
        path.chmod(0o644)
    args = {"flash": ["flash", "--port", str(port), "--chip", "esp32", "--firmware", str(fw)],
            "deploy": ["deploy", "--port", str(port), "--config", str(config)],
            "monitor": ["monitor", "--port", str(port), "--seconds", "0.1"]}[command]
    proc = _run_unprivileged(args, tmp_path)
    if "No module named" in proc.stderr:
        pytest.skip("the unprivileged user cannot read the venv: %s" % proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 2, proc.stderr
    assert "permission denied on serial port" in proc.stderr
    assert "usermod -aG dialout" in proc.stderr


def test_port_checks_directly(tmp_path: Path) -> None:
    from qis_firmware.serialport import check_port

    with pytest.raises(NoSuchPort):
        check_port(str(tmp_path / "nope"))
    with pytest.raises(NoSuchPort, match="no serial port given"):
        check_port("")
    check_port("rfc2217://192.0.2.1:4000")  # network ports are the tool's business
    if os.geteuid() != 0:
        port = tmp_path / "tty"
        port.write_bytes(b"")
        port.chmod(0)
        with pytest.raises(PortPermissionDenied):
            check_port(str(port))


def test_espressif_chips_need_a_port(tmp_path: Path, capsys) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    assert cli_main(["flash", "--chip", "esp32", "--firmware", str(fw), "--dry-run"]) == UsageError.exit_code
    assert "--port is required for esp32" in capsys.readouterr().err


def test_esptool_detection_errors_are_translated(tmp_path: Path) -> None:
    """esptool's own failure (not our pre-check) on a missing port becomes NoSuchPort."""
    with pytest.raises(NoSuchPort, match="does not exist"):
        esptool_adapter.detect_chip(str(tmp_path / "ttyUSB0"))
