"""The node key file (swarm/keyfile.py, outside the sans-IO core): created once with mode 0600, the same
identity on every later start, a wrong-length file refused with a message naming it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from qis_gateway.swarm.core.identity import IdentityError
from qis_gateway.swarm.keyfile import load_or_create


def test_created_private_then_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "data" / "node.key"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    assert load_or_create(path).node_id == first.node_id
    assert load_or_create(tmp_path / "other.key").node_id != first.node_id


def test_a_wrong_length_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"short")
    with pytest.raises(IdentityError, match="node.key holds 5 bytes"):
        load_or_create(path)
    assert path.read_bytes() == b"short"  # never overwritten
