"""Adversarial suite: each test reproduces one attack or fault of issue 18 against real nodes on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 90.0) -> Any:
    """Run one test coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))
