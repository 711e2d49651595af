"""One provisioning story (issue 14, point 5 and the file modes of point 12): `device add` takes the same
`--fixed KEY=VALUE` flags as `qis-device provision`, checks everything before it writes anything, and
`device remove` / `device rekey` exist; errors are one line with exit status 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from qis_gateway.cli import main
from qis_gateway.registry import Registry


def _ids(db: Path) -> list[str]:
    if not db.exists():
        return []
    with Registry(db) as reg:
        return [r.device_id for r in reg.list()]


def test_fixed_flags_like_provision(tmp_path: Path) -> None:
    db, out = tmp_path / "r.sqlite", tmp_path / "p.json"
    assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out), "--fixed", "machine_class=pump"]) == 0
    assert json.loads(out.read_text())["fixed"] == {"machine_class": "pump"}


@pytest.mark.parametrize("argv, says", [
    (["--fixed", "machine_class=boat"], "allows pump"),
    (["--fixed", "colour=red"], "no input 'colour'"),
    (["--fixed", '{"machine_class": "pump"}'], "KEY=VALUE"),
    (["--fixed", "machine_class=pump", "--fixed", "machine_class=fan"], "twice"),
    (["--site", "bad site"], "site"),
    (["--broker-port", "0"], "broker port"),
])
def test_bad_requests_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                    says: str) -> None:
    db, out = tmp_path / "r.sqlite", tmp_path / "p.json"
    assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _ids(db) == [] and not out.exists()


def test_existing_output_refused_before_registering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, out = tmp_path / "r.sqlite", tmp_path / "p.json"
    out.write_text("{}")
    assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert _ids(db) == [] and out.read_text() == "{}"


def test_remove_frees_the_id_and_rekey_replaces_the_secret(tmp_path: Path) -> None:
    db, out = tmp_path / "r.sqlite", tmp_path / "p.json"
    assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out)]) == 0
    first = json.loads(out.read_text())["secret"]
    with Registry(db) as reg:
        assert reg.accept_seq("pump-01", 7)
        reg.revoke("pump-01")
    assert main(["device", "rekey", "pump-01", "--db", str(db), "-o", str(out)]) == 0
    second = json.loads(out.read_text())
    assert second["secret"] != first and out.stat().st_mode & 0o777 == 0o600
    with Registry(db) as reg:
        rec = reg.get("pump-01")
        assert rec is not None and rec.secret.hex() == second["secret"] and rec.last_seq == -1 and not rec.revoked
    assert main(["device", "remove", "pump-01", "--db", str(db)]) == 0
    assert _ids(db) == []
    out.unlink()
    assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out)]) == 0
    assert main(["device", "remove", "nobody", "--db", str(db)]) == 2
    assert main(["device", "rekey", "nobody", "--db", str(db), "-o", str(tmp_path / "n.json")]) == 2


def test_secrets_are_private_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a later chmod (a crash between write and chmod, or a reader racing it), files must already be
    # 0600 when they appear: neither device.json nor the registry may rely on a chmod after writing.
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: None)
    old = os.umask(0o022)
    try:
        db, out = tmp_path / "data" / "registry.sqlite", tmp_path / "p.json"
        assert main(["device", "add", "pump-01", "--db", str(db), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o600
    assert db.stat().st_mode & 0o777 == 0o600
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if extra.exists():
            assert extra.stat().st_mode & 0o077 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can leave a root-owned registry behind")
def test_root_is_refused_on_the_service_users_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    out = tmp_path / "p.json"
    assert main(["device", "add", "pump-01", "--db", str(data / "registry.sqlite"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sudo -u" in err and len(err.strip().splitlines()) == 1
    assert list(data.iterdir()) == [] and not out.exists()
    db = data / "registry.sqlite"
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chown(db, 65534, 65534)
    assert main(["device", "list", "--db", str(db)]) == 2  # would leave root-owned -wal/-shm files
    assert sorted(p.name for p in data.iterdir()) == ["registry.sqlite"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can leave a root-owned registry behind")
def test_run_as_root_on_the_service_users_data_is_one_line_and_exit_2(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "registry.sqlite"
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chown(db, 65534, 65534)
    conf = tmp_path / "gw.toml"
    conf.write_text('[gateway]\ndata_dir = "%s"\n[swarm]\nlisten = "127.0.0.1:0"\n[metrics]\nlisten = ""\n' % data)
    assert main(["run", "--config", str(conf)]) == 2  # exit 2: the unit's RestartPreventExitStatus stops the loop
    err = capsys.readouterr().err
    assert "sudo -u" in err and "Traceback" not in err
    assert sorted(p.name for p in data.iterdir()) == ["registry.sqlite"]  # no root-owned key or state left


def test_qis_device_provision_checks_the_same_labels_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qis_firmware.cli import main as device_main

    db, out = tmp_path / "r.sqlite", tmp_path / "p.json"
    argv = ["provision", "pump-01", "--gateway-db", str(db), "--site", "plant-a", "--broker", "127.0.0.1:1883",
            "--out", str(out)]
    assert device_main([*argv, "--fixed", "machine_class=boat"]) == 2
    err = capsys.readouterr().err
    assert "allows pump" in err and len(err.strip().splitlines()) == 1
    assert _ids(db) == [] and not out.exists()
    assert device_main([*argv, "--fixed", "machine_class=pump"]) == 0
    assert json.loads(out.read_text())["fixed"] == {"machine_class": "pump"} and _ids(db) == ["pump-01"]
