"""Registry: add/list/revoke, atomic persistent seq, board config, and the `device` CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from qis_gateway.cli import main
from qis_gateway.ratelog import RateLimitedLog
from qis_gateway.registry import Registry, board_config


def test_add_get_list_revoke_and_seq_persist(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        rec = reg.add("pump-01", "site-a")
        assert len(rec.secret) == 32 and rec.last_seq == -1 and not rec.revoked
        with pytest.raises(ValueError, match="already registered"):
            reg.add("pump-01", "site-a")
        with pytest.raises(ValueError, match="device id"):
            reg.add("bad/id", "site-a")
        assert reg.accept_seq("pump-01", 0) and reg.accept_seq("pump-01", 5)
        assert not reg.accept_seq("pump-01", 5) and not reg.accept_seq("pump-01", 3)
        assert not reg.accept_seq("nobody", 1)
    with Registry(db) as reg:  # reopened: the seq survived
        assert reg.get("pump-01").last_seq == 5
        reg.revoke("pump-01")
        assert reg.get("pump-01").revoked and not reg.accept_seq("pump-01", 6)
        with pytest.raises(ValueError):
            reg.revoke("nobody")
        assert [r.device_id for r in reg.list()] == ["pump-01"]


def test_board_config_matches_the_contract_and_the_device_validator(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.sqlite") as reg:
        rec = reg.add("pump-01", "site-a")
    cfg = board_config(rec, "10.0.0.2", 1883, "machine_health.json", fixed={"machine_class": "pump"})
    assert cfg["secret"] == rec.secret.hex() and cfg["broker"]["host"] == "10.0.0.2"
    assert cfg["site"] == "site-a" and cfg["device"] == "pump-01" and cfg["schema"] == "machine_health.json"
    from qis_device.config import check_config  # the board's own validator accepts what we write

    checked = check_config(json.loads(json.dumps(cfg)))
    assert checked["key"] == rec.secret and checked["fixed"] == {"machine_class": "pump"}


def test_device_cli_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, out = str(tmp_path / "r.sqlite"), tmp_path / "boards" / "p.json"
    assert main(["device", "add", "pump-02", "--site", "s1", "--db", db, "-o", str(out),
                 "--fixed", "machine_class=fan"]) == 0
    cfg = json.loads(out.read_text())
    assert cfg["device"] == "pump-02" and cfg["fixed"] == {"machine_class": "fan"}
    assert out.stat().st_mode & 0o077 == 0
    assert main(["device", "add", "pump-02", "--db", db, "-o", str(out)]) == 2
    capsys.readouterr()
    assert main(["device", "list", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"device": "pump-02", "site": "s1", "last_seq": -1,
                                                    "revoked": False}]
    assert main(["device", "revoke", "pump-02", "--db", db]) == 0
    assert main(["device", "revoke", "nobody", "--db", db]) == 2


def test_ratelog_once_per_device_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=60)
    with caplog.at_level(logging.WARNING):
        written = [rl.reject("d1", "tag", "bad", now_s=t) for t in (0, 1, 2, 30)]
        written.append(rl.reject("d2", "tag", "bad", now_s=31))
        written.append(rl.reject("d1", "tag", "bad", now_s=61))
    assert written == [True, False, False, False, True, True]
    assert "+3 more" in caplog.records[-1].getMessage()
