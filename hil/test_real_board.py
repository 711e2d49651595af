"""Hardware in the loop: provision, deploy to a real board, and a round trip through a local broker.

Runs only when QIS_BOARD_PORT names the serial port of a board running MicroPython (flash it first:
docs/flashing.md). The board must reach this machine over WiFi:

    QIS_BOARD_PORT=/dev/ttyUSB0 QIS_WIFI_SSID=... QIS_WIFI_PASSWORD=... \\
    [QIS_BROKER_HOST=<this machine's LAN address>] [QIS_BOARD_SENSOR=sim] \\
    .venv/bin/python -m pytest hil/test_real_board.py -m hil -v

What it proves that the emulated and pty tests cannot: mpremote against a real raw REPL and flash file
system, the board's own bytecode version, .mpy files loading on the board's firmware, WiFi, and the
board's MQTT client against Mosquitto. Steps: provision a fresh id into a throwaway registry; start
Mosquitto listening on all interfaces; deploy; wait for the board's first fingerprint frame and verify
its HMAC tag; answer with a retained summary; wait for a later fingerprint (the loop carried on); then
deploy again and check nothing was copied (changed-only on real flash).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

PORT = os.environ.get("QIS_BOARD_PORT", "")
TIMEOUT_S = float(os.environ.get("QIS_HIL_TIMEOUT_S", "120"))


def _skip_reason() -> str | None:
    if not PORT:
        return "no real board attached: set QIS_BOARD_PORT to its serial port (e.g. /dev/ttyUSB0) to run"
    if "://" not in PORT and not os.path.exists(PORT):
        return "QIS_BOARD_PORT=%s does not exist (board unplugged?)" % PORT
    if not os.environ.get("QIS_WIFI_SSID"):
        return "QIS_BOARD_PORT is set but QIS_WIFI_SSID/QIS_WIFI_PASSWORD are not: the board needs WiFi"
    return None


pytestmark = [pytest.mark.hil, pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def lan_address() -> str:
    """This machine's address on the route to the outside (no packet is sent), unless QIS_BROKER_HOST."""
    given = os.environ.get("QIS_BROKER_HOST")
    if given:
        return given
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects the outgoing interface
        return s.getsockname()[0]


def test_real_board_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import paho.mqtt.client as mqtt
    from qis import messages
    from qis.topics import topic
    from qis_firmware.cli import main as cli_main
    from qis_firmware.provision import provision
    from support.broker import Broker, free_port, mosquitto_path

    if mosquitto_path() is None:
        pytest.skip("Mosquitto is not installed (apt-get install mosquitto)")
    host = lan_address()
    broker = Broker(tmp_path / "broker", kind="mosquitto", port=free_port("0.0.0.0"), host="0.0.0.0",
                    persistence=False).start()
    client = None
    try:
        device = "hil-%s" % secrets.token_hex(3)
        config_path = tmp_path / "device.json"
        provision(device, gateway_db=tmp_path / "registry.db", site="hil", broker="%s:%d" % (host, broker.port),
                  out=config_path, fixed={"machine_class": "pump"},
                  wifi=(os.environ["QIS_WIFI_SSID"], os.environ.get("QIS_WIFI_PASSWORD", "")),
                  sensor={"driver": os.environ.get("QIS_BOARD_SENSOR", "sim"), "seed": 1}, anonymous=True)
        config = json.loads(config_path.read_text())
        config.update(interval_s=3, summary_timeout_s=5)
        config_path.write_text(json.dumps(config))
        secret = bytes.fromhex(config["secret"])

        frames: queue.Queue[tuple[str, bytes]] = queue.Queue()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hil-gateway")
        client.on_message = lambda _c, _u, msg: frames.put((msg.topic, bytes(msg.payload)))
        client.connect("127.0.0.1", broker.port)
        client.subscribe("qis/v1/hil/%s/#" % device, qos=1)
        client.loop_start()

        assert cli_main(["deploy", "--port", PORT, "--config", str(config_path)]) == 0

        def next_fp(after_seq: int) -> dict:
            while True:
                name, payload = frames.get(timeout=TIMEOUT_S)
                if name.endswith("/fp"):
                    body = messages.decode(payload, secret, kind="fp", device=device)
                    if body["seq"] > after_seq:
                        return body

        first = next_fp(-1)
        assert first["schema"] == first["fields"]["schema"] == "machine-health/1"
        assert first["fields"]["machine_class"] == "pump" and len(first["vec"]) == 3
        summary = messages.encode_summary(device, first["seq"], secret, SimpleNamespace(
            enough=True, n=3, top=(("bearing-wear", 670),), conf=800, mean=None, level=0, hops=1, ms=12))
        client.publish(topic("hil", device, "summary"), summary, qos=1, retain=True).wait_for_publish(10)
        later = next_fp(first["seq"])
        assert later["seq"] > first["seq"]

        client.loop_stop()
        capsys.readouterr()
        assert cli_main(["deploy", "--port", PORT, "--config", str(config_path)]) == 0
        assert "copied 0," in capsys.readouterr().out  # changed-only against the manifest on real flash
    finally:
        if client is not None:
            client.loop_stop()
            client.disconnect()
        broker.stop()
