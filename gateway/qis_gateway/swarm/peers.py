"""Known-peer file: the addresses a node had in its routing table, so a restart can rejoin on its own.

How it works: ``save_peers`` writes ``{"version": 1, "peers": [["host", port], ...]}`` atomically (temp file +
``os.replace``) to ``<data dir>/peers.json``; ``load_peers`` reads it back, skipping entries that are not a
``[str, int]`` pair with a port in 1..65535 and treating a missing or unreadable file as "no peers" (logged),
so a damaged file can never stop a node from starting. Node ids are not stored: a contact's id is proven
again by the core when the peer answers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

PEERS_FILE = "peers.json"
Address = tuple[str, int]


def parse_hostport(text: str) -> Address:
    """``"HOST:PORT"`` (``"[v6]:PORT"`` for IPv6) -> ``(host, port)``; ValueError says what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, got %r" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError("port in %r is not a number" % text) from None
    if not 0 <= port <= 65535:
        raise ValueError("port in %r is outside 0..65535" % text)
    return host, port


def save_peers(data_dir: Path, peers: Iterable[Address], limit: int = 200) -> int:
    """Write up to ``limit`` distinct peers; returns how many were written."""
    seen: list[list[object]] = []
    keys: set[Address] = set()
    for host, port in peers:
        key = (str(host), int(port))
        if key not in keys:
            keys.add(key)
            seen.append([key[0], key[1]])
        if len(seen) >= limit:
            break
    path = Path(data_dir) / PEERS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "peers": seen}))
    os.replace(tmp, path)
    return len(seen)


def load_peers(data_dir: Path) -> list[Address]:
    """Peers saved by :func:`save_peers`, or ``[]`` when there is no usable file."""
    path = Path(data_dir) / PEERS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable peer file %s: %s", path, exc)
        return []
    raw = doc.get("peers") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        log.warning("ignoring peer file %s: no 'peers' list", path)
        return []
    out: list[Address] = []
    for item in raw:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and 0 < item[1] <= 65535
        ):
            out.append((item[0], item[1]))
        else:
            log.warning("skipping bad peer entry %r in %s", item, path)
    return out
