"""Home Assistant discovery, CLI wiring (keygen, bench, status offline, lookup arguments), JSON logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qis_gateway.cli import main
from qis_gateway.evidence import BoardSummary
from qis_gateway.homeassistant import HomeAssistant, state_topic
from qis_gateway.registry import Registry

from .helpers import Published


def test_home_assistant_discovery_state_and_birth(tmp_path: Path) -> None:
    published = Published()
    ha = HomeAssistant(published, "homeassistant")
    with Registry(tmp_path / "r.sqlite") as reg:
        reg.add("pump-01", "site-a")
        reg.add("old-02", "site-a")
        reg.revoke("old-02")
        records = reg.list()
    assert ha.announce(records) == 1
    # the revoked board's config is cleared (empty retained), the active one's sent, the gateway marked online
    assert ("homeassistant/sensor/qis_site-a_old-02/config", b"", 1, True) in published
    assert published[-1] == (ha.availability, b"online", 1, True)
    (topic, payload, qos, retain) = [m for m in published if m[0].endswith("pump-01/config")][0]
    config = json.loads(payload)
    assert topic == "homeassistant/sensor/qis_site-a_pump-01/config" and retain and qos == 1
    assert config["state_topic"] == state_topic("site-a", "pump-01") == "qis-ha/site-a/pump-01/state"
    assert config["unique_id"] == "qis_site-a_pump-01_outcome"
    rec = records[1] if records[1].device_id == "pump-01" else records[0]
    ha.on_summary(rec, BoardSummary(enough=True, n=7, top=(("bearing_wear", 714), ("ok", 286)), conf=512,
                                    mean=None, level=1, hops=2, ms=4))
    state = json.loads(published[-1][1])
    assert published[-1][0] == "qis-ha/site-a/pump-01/state" and published[-1][3]
    assert state["outcome"] == "bearing_wear" and state["share_pct"] == 71.4 and state["confidence_pct"] == 51.2
    ha.on_summary(rec, BoardSummary(enough=False, n=0, top=(), conf=0, mean=None, level=0, hops=0, ms=1))
    assert json.loads(published[-1][1])["outcome"] == "unknown"
    before = len(published)
    assert not ha.on_birth(b"offline", records) and len(published) == before
    assert ha.on_birth(b"online", records) and len(published) == before + 3  # re-announced (clear, config, online)


def test_keygen_is_wired_and_bench_is_not_a_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k" / "gateway.key"
    key.parent.mkdir()
    assert main(["keygen", str(key)]) == 0
    assert key.exists() and key.stat().st_mode & 0o077 == 0
    assert main(["keygen", str(key)]) == 1  # refuses to overwrite
    with pytest.raises(SystemExit) as info:  # benchmarks live in bench/, outside the installed package
        main(["bench", "synthesis"])
    assert info.value.code == 2


def test_status_offline_and_lookup_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from support.broker import free_port

    config = tmp_path / "g.toml"
    config.write_text('[gateway]\ndata_dir = "%s"\n[metrics]\nlisten = "127.0.0.1:%d"\n' % (tmp_path, free_port()))
    assert main(["status", "--config", str(config), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"running": False, "queue_depth": 0, "outcomes_stored": 0}
    assert main(["lookup", "abcd", "--bootstrap", "127.0.0.1:1"]) == 2
    assert main(["lookup", "00" * 32]) == 2
    assert "64 hex" in capsys.readouterr().err  # usage errors go to stderr


def test_json_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from qis_gateway.config import build_config
    from qis_gateway.service import setup_logging

    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    saved = root.level
    try:
        setup_logging(build_config({"log": {"json": True, "level": "WARNING"}}, environ={}))
        logging.getLogger("qis_gateway.test").warning("hello %s", "pi")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["msg"] == "hello pi" and json.loads(line)["level"] == "WARNING"
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
