"""The whole path without hardware: deploy into emulated:DIR, then `qis-device emulate` runs the deployed
board code under the unix port against a real broker, and its fingerprint frames verify."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
from pathlib import Path

import pytest
from qis import messages
from qis_firmware.cli import main as cli_main

from .test_deploy import write_config

EMULATE_HEAP = "256K"  # the device engineer owns the minimum; this test is about the deploy path


def test_deployed_code_runs_as_an_emulated_board_and_publishes_verified_frames(tmp_path: Path, broker) -> None:
    pytest.importorskip("qis_firmware.emulate", reason="qis-device emulate (device engineer, issue 3) not present")
    import paho.mqtt.client as mqtt

    config_path = write_config(tmp_path, broker={"host": broker.host, "port": broker.port},
                               interval_s=0, summary_timeout_s=1)
    board = tmp_path / "board"
    assert cli_main(["deploy", "--port", "emulated:%s" % board, "--config", str(config_path)]) == 0
    assert (board / "qis_device" / "app.mpy").exists()

    frames: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="firmware-test")
    client.on_message = lambda _c, _u, msg: frames.put(bytes(msg.payload))
    client.connect(broker.host, broker.port)
    client.subscribe("qis/v1/site-a/pump-01/fp", qos=1)
    client.loop_start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qis_firmware.cli", "emulate", "--config", str(board / "device.json"),
             "--code", str(board), "--readings", "2", "--heap", EMULATE_HEAP],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        secret = bytes.fromhex(json.loads(config_path.read_text())["secret"])
        bodies = [messages.decode(frames.get(timeout=10), secret, kind="fp", device="pump-01") for _ in range(2)]
    finally:
        client.loop_stop()
        client.disconnect()
    assert [b["seq"] for b in bodies] == [0, 1]
    assert all(b["fields"]["machine_class"] == "pump" for b in bodies)


@pytest.mark.parametrize("argv", [["emulate", "--help"], ["-v", "emulate", "--help"]])
def test_emulate_is_dispatched_to_the_emulator(argv: list[str], capsys) -> None:
    pytest.importorskip("qis_firmware.emulate", reason="qis-device emulate (device engineer, issue 3) not present")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 0
    assert "--readings" in capsys.readouterr().out
