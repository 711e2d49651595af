"""`qis-device provision`: one step from an id to a registry entry and a deployable device.json."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from qis_firmware.cli import main as cli_main
from qis_firmware.config import load_config
from qis_firmware.deploy import deploy
from qis_firmware.errors import ProvisionError, UsageError
from qis_firmware.provision import parse_broker, parse_fixed, provision
from qis_firmware.targets import EmulatedTarget

from .test_deploy import qis_only

registry_mod = pytest.importorskip("qis_gateway.registry", reason="gateway registry (issue 5) not installed")


def test_provision_registers_and_writes_a_config_the_gateway_and_deploy_agree_on(tmp_path: Path, capsys) -> None:
    db = tmp_path / "gw" / "registry.db"
    out = tmp_path / "pump-01.json"
    rc = cli_main(["provision", "pump-01", "--gateway-db", str(db), "--site", "site-a",
                   "--broker", "192.0.2.10:1884", "--out", str(out), "--fixed", "machine_class=pump",
                   "--wifi-ssid", "plant", "--wifi-password", "s3cret"])
    assert rc == 0, capsys.readouterr().err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = json.loads(out.read_text())
    with registry_mod.Registry(db) as registry:
        record = registry.get("pump-01")
    assert record is not None and record.site == "site-a" and not record.revoked
    assert config["secret"] == record.secret.hex() and len(config["secret"]) == 64
    assert config["broker"]["host"] == "192.0.2.10" and config["broker"]["port"] == 1884
    # the login `qis-gateway broker-config` writes into Mosquitto's password file for this board
    assert config["broker"]["user"] == "pump-01"
    assert config["broker"]["password"] == registry_mod.board_password(record.secret)
    assert config["fixed"] == {"machine_class": "pump"} and config["wifi"]["ssid"] == "plant"
    assert load_config(out)["device"] == "pump-01"
    result = deploy(EmulatedTarget(tmp_path / "board"), out, sources=qis_only())
    assert "device.json" in result.copied and "machine_health.json" in result.copied


def test_duplicate_id_is_refused_and_existing_config_is_not_overwritten(tmp_path: Path, capsys) -> None:
    db = tmp_path / "registry.db"
    provision("fan-2", gateway_db=db, site="s1", broker="gw.local", out=tmp_path / "a.json", anonymous=True)
    broker = json.loads((tmp_path / "a.json").read_text())["broker"]
    assert broker["port"] == 1883 and broker["user"] is None and broker["password"] is None
    with pytest.raises(ProvisionError, match="already registered"):
        provision("fan-2", gateway_db=db, site="s1", broker="gw.local", out=tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    before = (tmp_path / "a.json").read_bytes()
    rc = cli_main(["provision", "fan-3", "--gateway-db", str(db), "--site", "s1", "--broker", "h:1",
                   "--out", str(tmp_path / "a.json")])
    assert rc == UsageError.exit_code and "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "a.json").read_bytes() == before
    with registry_mod.Registry(db) as registry:
        assert registry.get("fan-3") is None  # refused before the registry was touched


def test_bad_ids_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="refused"):
        provision("bad id/1", gateway_db=tmp_path / "r.db", site="s", broker="h:1", out=tmp_path / "c.json")
    assert parse_broker("10.0.0.2:8883") == ("10.0.0.2", 8883)
    for bad in (":1883", "host:http", "host:70000"):
        with pytest.raises(UsageError):
            parse_broker(bad)
    assert parse_fixed(["line=3", "class=pump"]) == {"line": 3, "class": "pump"}
    with pytest.raises(UsageError):
        parse_fixed(["novalue"])
