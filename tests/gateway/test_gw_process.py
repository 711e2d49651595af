"""`qis-gateway run` as a real process with a real swarm peer (`qis-swarm node`) on loopback:
the peer SIGKILLed -> the gateway, alone, stores its outcomes locally; the gateway SIGKILLed -> restarted,
nothing is lost and seq numbers still hold; SIGTERM is graceful; `status` and `lookup` subcommands;
resident memory measured (for MemoryMax=)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from qis_gateway.registry import Registry, board_password
from support.broker import free_port, mosquitto_path

from .helpers import MACHINE, Board, BoardClient, SecureBroker

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs Mosquitto (apt install mosquitto)")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.p: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        out = open(self.log, "ab")
        self.p = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def signal(self, sig: int) -> int:
        assert self.p is not None
        self.p.send_signal(sig)
        return self.p.wait(30)

    def close(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
        return json.loads(resp.read())


def wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def rss_kib(pid: int) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_peer_lost_then_gateway_sigkilled_and_restarted(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    with Registry(data / "registry.sqlite") as reg:
        board = Board("site-a", "pump-01", reg.add("pump-01", "site-a").secret)
    broker = SecureBroker(data, data / "registry.sqlite")
    peer_port, metrics_port = free_udp_port(), free_port()
    peer_cmd = [sys.executable, "-m", "qis_gateway.swarm.cli", "node", "--listen", "127.0.0.1:%d" % peer_port,
                "--data", str(tmp_path / "peer"), "--status-interval", "3600"]
    peer = Proc(peer_cmd, tmp_path / "peer.log")
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "%s"' % data,
        "[mqtt]", "port = %d" % broker.port, 'username = "qis-gateway"', 'client_id = "gw-kill-test"',
        "reconnect_min_s = 0.1", "reconnect_max_s = 1.0",
        "[swarm]", 'listen = "127.0.0.1:0"', 'bootstrap = ["127.0.0.1:%d"]' % peer_port,
        "[synthesis]", "min_n = 1",
        "[outbox]", "retry_min_s = 0.2", "retry_max_s = 1.0",
        "[metrics]", 'listen = "127.0.0.1:%d"' % metrics_port, ""]))
    env = dict(os.environ, QIS_MQTT_PASSWORD="gw-pass")  # the secret comes from the environment
    gw_cmd = [sys.executable, "-m", "qis_gateway.cli", "run", "--config", str(config)]
    gw_log = tmp_path / "gateway.log"

    def start_gateway() -> subprocess.Popen[bytes]:
        out = open(gw_log, "ab")
        p = subprocess.Popen(gw_cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        wait(lambda: get_json(metrics_port, "/health")["ok"], 30, "gateway healthy")
        return p

    gw = start_gateway()
    client = BoardClient(board, "127.0.0.1", broker.port, board_password(board.secret))
    try:
        wait(lambda: get_json(metrics_port, "/status")["peers"] >= 1, 15, "gateway joined the peer")
        seq = client.send(board.fp(temperature_c=88, vibration=8))
        wait(lambda: client.got["summary"], 15, "first summary")
        client.send(board.outcome(seq, "bearing_wear"))
        wait(lambda: get_json(metrics_port, "/status")["outcomes_stored"] == 4, 15, "first outcome stored")
        rss_busy = rss_kib(gw.pid)

        # The swarm goes away: puts to the dead peer fail (the outbox retries them) until the peer is evicted,
        # then the gateway is a swarm of one and stores its outcomes locally (counted as stored).
        peer.signal(signal.SIGKILL)
        fp_seqs = [client.send(board.fp(temperature_c=60 + i)) for i in range(5)]
        wait(lambda: len(client.got["summary"]) == 6, 20, "answers while the swarm is down")
        for s in fp_seqs:
            client.send(board.outcome(s, "ok"))
        wait(lambda: get_json(metrics_port, "/status")["outcomes_stored"] == 24, 30, "stored alone")
        assert get_json(metrics_port, "/status")["queue_depth"] == 0
        assert gw.poll() is None
        os.kill(gw.pid, signal.SIGKILL)
        gw.wait(10)

        peer.start()  # the swarm is back; the gateway is restarted (systemd Restart=on-failure)
        gw = start_gateway()
        wait(lambda: get_json(metrics_port, "/status")["queue_depth"] == 0, 40, "outbox empty after the restart")
        assert get_json(metrics_port, "/status")["outcomes_stored"] == 24
        # seq numbers survived the kill: an old frame with new content is refused as a replay
        replay = Board(board.site, board.device, board.secret, seq=fp_seqs[-1] - 1)
        client.send(replay.fp(temperature_c=10))
        wait(lambda: any(e["code"] == "replay" for e in client.got["error"]), 15, "replay refused")
        # `status` and `lookup` see it too
        st = subprocess.run(gw_cmd[:3] + ["status", "--config", str(config), "--json"], capture_output=True,
                            text=True, timeout=60, env=env)
        assert st.returncode == 0 and json.loads(st.stdout)["outcomes_stored"] == 24
        fields = MACHINE.categorise(dict(board.fixed, temperature_c=88, vibration_mm_s=8, load_pct=50,
                                         current_a=10))
        address = MACHINE.level_addresses(fields)[0].hex()
        lk = subprocess.run(gw_cmd[:3] + ["lookup", address, "--bootstrap", "127.0.0.1:%d" % peer_port],
                            capture_output=True, text=True, timeout=60)
        assert lk.returncode == 0 and "label=bearing_wear" in lk.stdout, lk.stdout + lk.stderr
        # steady traffic with evidence in the swarm (numpy synthesis loaded), then measure memory
        before = len(client.got["summary"])
        t0 = time.perf_counter()
        for _ in range(100):
            client.send(board.fp(temperature_c=88, vibration=8))
        wait(lambda: len(client.got["summary"]) == before + 100, 30, "100 answers")
        elapsed_s = time.perf_counter() - t0
        answers = client.got["summary"][before:]
        assert all(s["n"] >= 1 for s in answers)
        ms = sorted(s["ms"] for s in answers)
        print("100 fps answered in %.2f s (sent one by one, QoS 1); gateway lookup+synthesis ms p50 %d, max %d"
              % (elapsed_s, ms[50], ms[-1]))
        rss_after = rss_kib(gw.pid)
        # SIGTERM: graceful, exit status 0
        assert gw.send_signal(signal.SIGTERM) is None and gw.wait(30) == 0
        print("gateway RSS: %d KiB after the first round trip, %d KiB after restart, flush and 100 answered fps"
              % (rss_busy, rss_after))
    finally:
        client.close()
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        peer.close()
        broker.kill()
