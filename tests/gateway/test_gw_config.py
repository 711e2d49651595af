"""Configuration: defaults, every kind of error naming its key, env overrides, `run` exits 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from qis_gateway.config import SETTINGS, ConfigError, build_config, default, example_toml, load_config

SECTIONS = ("gateway", "mqtt", "swarm", "synthesis", "outbox", "metrics", "log", "homeassistant")

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_example_round_trip(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.mqtt.port == 1883 and config.mqtt.protocol == "3.1.1"
    assert config.swarm.listen == ("0.0.0.0", 4000) and config.gateway.trusted_keys is None
    example = tmp_path / "gateway.toml"
    example.write_text(example_toml().replace('data_dir = "/var/lib/qis-gateway"', 'data_dir = "%s"' % tmp_path))
    loaded = load_config(example, environ={})
    defaults = build_config({"gateway": {"data_dir": str(tmp_path)}}, environ={})
    assert dataclasses.replace(loaded, source=None) == defaults


def test_every_setting_is_one_typed_field_whose_default_is_the_tables() -> None:
    config = load_config(None, environ={})
    fields = {(name, f.name): f for name in SECTIONS for f in dataclasses.fields(getattr(config, name))}
    assert set(fields) == {(s.section, s.key) for s in SETTINGS}  # no setting unread, no field without one
    for s in SETTINGS:
        f = fields[(s.section, s.key)]
        if f.default is not dataclasses.MISSING:  # sections a test may build alone
            assert f.default == s.default == default(s.section, s.key), (s.section, s.key)
    assert not hasattr(config, "get")  # consumers read typed fields, not ("section", "key") strings


def test_a_renamed_setting_names_its_successor() -> None:
    with pytest.raises(ConfigError, match="synthesis.max_per_signer: renamed to synthesis.min_per_signer"):
        build_config({"synthesis": {"max_per_signer": 50}}, environ={})


def test_shipped_example_is_valid_and_complete() -> None:
    text = (REPO / "deploy" / "gateway.example.toml").read_text()
    for s in SETTINGS:
        assert "\n%s = " % s.key in text, s.key
    load_config(REPO / "deploy" / "gateway.example.toml", environ={})


@pytest.mark.parametrize("data, key, words", [
    ({"mqtt": {"port": "1883"}}, "mqtt.port", "integer"),
    ({"mqtt": {"port": 70000}}, "mqtt.port", "1..65535"),
    ({"mqtt": {"protocol": "4"}}, "mqtt.protocol", "3.1.1, 5"),
    ({"mqtt": {"tls": "yes"}}, "mqtt.tls", "true or false"),
    ({"mqtt": {"hots": "x"}}, "mqtt.hots", "unknown setting"),
    ({"mqtt": 3}, "mqtt", "table"),
    ({"mqtt_": {}}, "[mqtt_]", "unknown section"),
    ({"swarm": {"bootstrap": ["nohost"]}}, "swarm.bootstrap[0]", "HOST:PORT"),
    ({"swarm": {"listen": "1.2.3.4"}}, "swarm.listen", "HOST:PORT"),
    ({"gateway": {"trusted_keys": ["abcd"]}}, "gateway.trusted_keys[0]", "64 hex"),
    ({"outbox": {"flush_rate_per_s": 0}}, "outbox.flush_rate_per_s", "0.1..10000"),
    ({"mqtt": {"reconnect_min_s": 10.0, "reconnect_max_s": 1.0}}, "mqtt.reconnect_max_s", ">="),
    ({"mqtt": {"client_id": "a/b+"}}, "mqtt.client_id", "letters"),
])
def test_errors_name_the_key_and_the_problem(data: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data, environ={})
    assert str(info.value).startswith(key) and words in str(info.value)


def test_env_overrides_secrets() -> None:
    config = build_config({"mqtt": {"password": "in-file"}}, environ={"QIS_MQTT_PASSWORD": "from-env"})
    assert config.mqtt.password == "from-env"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "etc" / "gw.toml"
    f.parent.mkdir()
    f.write_text('[gateway]\ndata_dir = "../var"\nregistry = "reg.db"\n')
    config = load_config(f, environ={})
    assert config.registry_path == (tmp_path / "var" / "reg.db").resolve()


@pytest.mark.parametrize("text, needle", [
    ("[mqtt]\nport = \"x\"\n", "mqtt.port: must be an integer"),
    ("[mqtt\nport = 1\n", "invalid TOML"),
    (None, "cannot read the config file"),
])
def test_run_with_a_bad_file_exits_2(tmp_path: Path, text: str | None, needle: str) -> None:
    path = tmp_path / "gateway.toml"
    if text is not None:
        path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "qis_gateway.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
