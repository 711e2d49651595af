"""Fixtures for the board tests: compiled board code (once per session), a test responder, and the
interpreter (the 64-bit unix port; also a 32-bit build when $QIS_MICROPYTHON32 names one)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from devsupport import Responder, code_dir
from support.broker import Broker
from support.wordsize import pytest_generate_tests, word

__all__ = ["pytest_generate_tests", "word"]  # the interpreter switch (support/wordsize.py)


@pytest.fixture(scope="session")
def mpy_dir() -> Iterator[Path]:
    """The board code (shared/qis + device/qis_device) compiled with mpy-cross, as shipped. In a short
    directory, as on a board (/lib): MicroPython interns every imported module's file path as a qstr,
    and pytest's long temp paths cost the 19 board modules ~0.6 KB of heap (the RAM tests' figures).
    mpy-cross writes bytecode-only .mpy files for 31-bit small ints whatever the host's word size, so
    the same files run on both interpreters and on a board."""
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
