"""Gateway key files: 0600, never overwritten, loose permissions warned about, trust lists."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from qis_gateway.keys import (
    KeyFileError,
    generate_key_file,
    keygen_main,
    load_signing_key,
    load_trust_list,
    parse_public_key,
)
from qis_gateway.packets import encode, signer_id, verify

from packets.helpers import packet


def test_generated_key_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "gw.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key = generate_key_file(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_signing_key(path)
    assert bytes(loaded) == bytes(key)
    assert verify(encode(packet(), loaded)).origin_key == bytes(key.verify_key)


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "gw.key"
    first = generate_key_file(path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key_file(path)
    assert bytes(load_signing_key(path)) == bytes(first)


def test_two_keys_differ(tmp_path: Path) -> None:
    assert bytes(generate_key_file(tmp_path / "a")) != bytes(generate_key_file(tmp_path / "b"))


def test_loose_permissions_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gw.key"
    generate_key_file(path)
    with caplog.at_level(logging.WARNING, logger="qis_gateway.keys"):
        load_signing_key(path)
    assert not caplog.records
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="qis_gateway.keys"):
        load_signing_key(path)
    assert "loose permissions 0644" in caplog.text and "chmod 600" in caplog.text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"hello", "not a qis key file"),
        (b"qis-ed25519-seed:zz", "not hex"),
        (b"qis-ed25519-seed:abcd", "32 bytes"),
        (b"\xff\xfe", "not ASCII"),
    ],
)
def test_bad_key_files_give_clear_errors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=match):
        load_signing_key(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signing_key(tmp_path / "nope")
    with pytest.raises(KeyFileError, match="cannot create"):
        generate_key_file(tmp_path / "no-dir" / "k")


def test_trust_list(tmp_path: Path) -> None:
    a, b = (bytes(generate_key_file(tmp_path / n).verify_key) for n in ("a", "b"))
    path = tmp_path / "trusted"
    path.write_text("# gateways of site A\n%s  gateway-a\n\n%s # b\n" % (a.hex(), b.hex().upper()))
    assert load_trust_list(path) == {a, b}
    path.write_text("%s\nnot-a-key\n" % a.hex())
    with pytest.raises(KeyFileError, match="line 2"):
        load_trust_list(path)
    with pytest.raises(KeyFileError, match="32 bytes"):
        parse_public_key("abcd")


def test_keygen_main_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.key"
    assert keygen_main(["--out", str(path)]) == 0
    out = capsys.readouterr().out
    key = load_signing_key(path)
    assert bytes(key.verify_key).hex() in out and signer_id(bytes(key.verify_key)).hex() in out
    assert keygen_main(["--out", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert bytes(load_signing_key(path)) == bytes(key)


def test_keygen_main_accepts_a_positional_path_and_refuses_none(tmp_path: Path) -> None:
    assert keygen_main([str(tmp_path / "k")]) == 0
    with pytest.raises(SystemExit):
        keygen_main([])
    with pytest.raises(SystemExit):
        keygen_main(["--out", str(tmp_path / "a"), str(tmp_path / "b")])


def test_qis_gateway_keygen_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qis_gateway import cli

    path = tmp_path / "gw.key"
    assert cli.main(["keygen", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_signing_key(path).verify_key).hex() in capsys.readouterr().out
    assert cli.main(["keygen", "--out", str(path)]) != 0


def test_signing_key_from_seed_is_deterministic() -> None:
    from qis_gateway.keys import signing_key_from_seed

    first, second = signing_key_from_seed(b"\x07" * 32), signing_key_from_seed(b"\x07" * 32)
    assert bytes(first.verify_key) == bytes(second.verify_key)
    with pytest.raises(KeyFileError):
        signing_key_from_seed(b"short")
