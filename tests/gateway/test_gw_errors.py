"""Swarm errors are sorted by type: an outage is retried quietly, a usage error is reported once, loudly,
and never retried; a permissioned gateway that does not trust its own key refuses to start."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest
from qis_gateway.backend import is_unavailable
from qis_gateway.config import OutboxSettings, build_config
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.packet_cache import make_validator
from qis_gateway.service import Gateway
from qis_gateway.swarm import SwarmError, SwarmStopped, SwarmUnavailable, SwarmUsageError

from .helpers import MemorySwarm, make_rig, metric

OTHER = bytes(nacl.signing.SigningKey(hashlib.sha256(b"another gateway").digest()).verify_key)


def test_is_unavailable_goes_by_type_not_by_class_name() -> None:
    assert is_unavailable(SwarmUnavailable("no peer")) and is_unavailable(SwarmStopped("not running"))
    assert not is_unavailable(SwarmUsageError("own key not trusted"))
    assert not is_unavailable(SwarmError("the base class is not an outage"))

    class SwarmUnavailable_(Exception):  # noqa: N801 - a foreign class that only looks like ours
        pass

    SwarmUnavailable_.__name__ = "SwarmUnavailable"
    assert not is_unavailable(SwarmUnavailable_("named alike"))


def test_a_usage_error_stops_the_outbox_once_loudly_and_keeps_the_packets(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig(tmp_path)
    rig.swarm.validator = make_validator(rig.bridge.evidence.cache, frozenset({OTHER}))  # refuses our packets
    board = rig.board()
    t, frame, seq = board.fp()
    rig.bridge.admit(t, frame)
    t, frame, _ = board.outcome(seq, "bearing_wear")
    rig.bridge.admit(t, frame)
    queued = rig.state.pending()
    assert queued == 4

    async def scenario() -> OutboxFlusher:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics,
                                OutboxSettings(flush_rate_per_s=1000, retry_min_s=0.01, retry_max_s=0.02))
        flusher.start()
        await asyncio.sleep(0.5)  # an outage would have been retried dozens of times by now
        flusher.wake()
        await asyncio.sleep(0.1)
        await flusher.stop()
        return flusher

    with caplog.at_level(logging.DEBUG, logger="qis_gateway.flusher"):
        flusher = asyncio.run(scenario())
    # the puts already in flight when the first failed fail too (the window is 32); none is ever retried
    assert 1 <= rig.swarm.attempts <= queued and rig.swarm.puts == 0
    assert flusher.blocked and "validator" in flusher.blocked
    assert rig.state.pending() == queued  # nothing lost: stored after the configuration is fixed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "trusted_keys" in errors[0].getMessage()
    assert metric(rig.metrics, "qis_gateway_put_failures_total") == rig.swarm.attempts


def test_an_outage_is_still_retried(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    rig.bridge.admit(t, frame)
    rig.bridge.admit(*board.outcome(seq, "x")[:2])
    rig.swarm.available = False

    async def scenario() -> OutboxFlusher:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics,
                                OutboxSettings(flush_rate_per_s=1000, retry_min_s=0.01, retry_max_s=0.02))
        flusher.start()
        await asyncio.sleep(0.4)
        rig.swarm.available = True
        for _ in range(100):
            if not rig.state.pending():
                break
            await asyncio.sleep(0.02)
        await flusher.stop()
        return flusher

    flusher = asyncio.run(scenario())
    assert flusher.blocked is None and rig.state.pending() == 0 and rig.swarm.puts == 4
    assert metric(rig.metrics, "qis_gateway_put_failures_total") >= 2


def test_a_gateway_missing_from_its_own_trust_list_refuses_to_start(tmp_path: Path) -> None:
    data = {"gateway": {"data_dir": str(tmp_path), "trusted_keys": [OTHER.hex()]},
            "swarm": {"listen": "127.0.0.1:0"}, "metrics": {"listen": ""}}
    swarm = MemorySwarm()
    gateway = Gateway(build_config(data, environ={}), swarm=swarm)
    with pytest.raises(ValueError, match="gateway.trusted_keys: this gateway's own key [0-9a-f]{64}"):
        asyncio.run(gateway.start())
    assert not swarm.running  # refused before anything started
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "%s"\ntrusted_keys = ["%s"]\n[swarm]\nlisten = "127.0.0.1:0"\n'
                      '[metrics]\nlisten = ""\n' % (tmp_path, OTHER.hex()))
    proc = subprocess.run([sys.executable, "-m", "qis_gateway.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "own key" in proc.stderr, proc.stderr
