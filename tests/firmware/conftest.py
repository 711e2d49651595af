"""Fixtures of the firmware tests."""

from __future__ import annotations

import pytest
from support.wheel import InstalledWheel, build_and_install


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """qis-edge built as a wheel from this checkout and installed into a clean venv, once per session."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))
