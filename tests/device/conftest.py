"""Fixtures for the board tests: compiled board code (once per session) and a test responder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from devsupport import Responder, code_dir
from support.broker import Broker


@pytest.fixture(scope="session")
def mpy_dir() -> Iterator[Path]:
    """The board code (shared/qis + device/qis_device) compiled with mpy-cross, as shipped. In a short
    directory, as on a board (/lib): MicroPython interns every imported module's file path as a qstr,
    and pytest's long temp paths cost the 19 board modules ~0.6 KB of heap (the RAM tests' figures)."""
    root = Path(tempfile.mkdtemp(prefix="qd"))
    try:
        yield code_dir(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def responder(broker: Broker) -> Iterator[Responder]:
    r = Responder(broker.host, broker.port)
    try:
        yield r
    finally:
        r.close()
