"""peers.py: HOST:PORT parsing and the saved peer list (damaged files never stop a node)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qis_gateway.swarm.peers import PEERS_FILE, load_peers, parse_hostport, save_peers


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:4000", ("127.0.0.1", 4000)), ("[::1]:5", ("::1", 5)), ("pi.local:0", ("pi.local", 0))],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["4000", ":4000", "host:", "host:x", "host:70000", "host:-1"])
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)


def test_save_and_load_round_trip_dedupes_and_limits(tmp_path: Path) -> None:
    peers = [("127.0.0.1", 1000 + i) for i in range(10)] + [("127.0.0.1", 1000)]
    assert save_peers(tmp_path, peers, limit=5) == 5
    assert load_peers(tmp_path) == peers[:5]
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_or_damaged_files_give_no_peers(tmp_path: Path) -> None:
    assert load_peers(tmp_path) == []
    (tmp_path / PEERS_FILE).write_text("{not json")
    assert load_peers(tmp_path) == []
    (tmp_path / PEERS_FILE).write_text(json.dumps({"peers": "nope"}))
    assert load_peers(tmp_path) == []
    (tmp_path / PEERS_FILE).write_text(
        json.dumps({"peers": [["a", 1], ["b", 0], ["c", 70000], [1, 2], ["d", True], ["e"], ["f", 65535]]})
    )
    assert load_peers(tmp_path) == [("a", 1), ("f", 65535)]
