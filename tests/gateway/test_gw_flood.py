"""A QoS 0 flood on one board's topic against a real gateway process: memory stays bounded, the excess is
dropped and counted, and real readings are still answered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from qis_gateway.registry import Registry, board_password
from support.broker import free_port, mosquitto_path

from .helpers import Board, BoardClient, SecureBroker
from .test_gw_process import get_json, rss_kib, wait


@pytest.mark.slow
@pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")
def test_qos0_flood_on_a_board_topic_stays_under_memory_high(tmp_path: Path) -> None:
    """Issue: 100,000 x 1 KB QoS 0 frames on one board's topic took the gateway to 158 MB (MemoryMax=128M)."""
    data = tmp_path / "gw"
    data.mkdir()
    with Registry(data / "registry.sqlite") as reg:
        board = Board("site-a", "pump-01", reg.add("pump-01", "site-a").secret)
    broker = SecureBroker(data, data / "registry.sqlite")
    metrics_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "%s"' % data,
        "[mqtt]", "port = %d" % broker.port, 'username = "qis-gateway"', 'client_id = "gw-flood-test"',
        "[swarm]", 'listen = "127.0.0.1:0"',
        "[metrics]", 'listen = "127.0.0.1:%d"' % metrics_port, ""]))
    env = dict(os.environ, QIS_MQTT_PASSWORD="gw-pass")
    with open(tmp_path / "gateway.log", "ab") as out:
        gw = subprocess.Popen([sys.executable, "-m", "qis_gateway.cli", "run", "--config", str(config)],
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    client = BoardClient(board, "127.0.0.1", broker.port, board_password(board.secret))
    try:
        wait(lambda: get_json(metrics_port, "/health")["status"] in ("ok", "degraded"), 30, "gateway up")
        peak = 0
        payload = b"{" + b"x" * 1022 + b"}"
        for i in range(100_000):
            client.client.publish(board.topic("fp"), payload, qos=0)
            if i % 5000 == 0:
                peak = max(peak, rss_kib(gw.pid))
        for _ in range(100):  # until the gateway has read it all
            time.sleep(0.2)
            peak = max(peak, rss_kib(gw.pid))
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=5) as resp:
            text = resp.read().decode()
        dropped = sum(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("qis_gateway_incoming_dropped_total"))
        print("QoS 0 flood: peak RSS %d KiB, %d dropped" % (peak, dropped))
        assert peak < 96 * 1024  # the unit's MemoryHigh
        assert dropped > 0
        assert get_json(metrics_port, "/health")["status"] in ("ok", "degraded")
        seq = client.send(board.fp())  # and a real reading is still answered
        wait(lambda: any(s["re"] == seq for s in client.got["summary"]), 30, "a summary after the flood")
    finally:
        client.close()
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        broker.kill()
