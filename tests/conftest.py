"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker import Broker, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker (Mosquitto, else amqtt) on a free loopback port, stopped after the test."""
    b = start_broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker with persistence (skipped with the reason when Mosquitto is absent)."""
    b = start_broker(tmp_path / "mosquitto", require_mosquitto=True)
    try:
        yield b
    finally:
        b.kill()
