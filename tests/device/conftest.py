"""Fixtures for the board tests: compiled board code (once per session) and a test responder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from devsupport import Responder, code_dir
from support.broker import Broker


@pytest.fixture(scope="session")
def mpy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The board code (shared/qis + device/qis_device) compiled with mpy-cross, as shipped."""
    return code_dir(tmp_path_factory.mktemp("board"))


@pytest.fixture
def responder(broker: Broker) -> Iterator[Responder]:
    r = Responder(broker.host, broker.port)
    try:
        yield r
    finally:
        r.close()
