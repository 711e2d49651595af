"""HIL fixtures: a whole local system (brokers, gateway processes, one UDP swarm, emulated boards) that
is torn down even when a test fails. Logs of every process stay in the test's tmp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qis_gateway.harness.system import LocalSystem, SystemSpec


def _has_opendht() -> bool:
    try:
        import opendht  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Callable[..., LocalSystem]]:
    systems: list[LocalSystem] = []

    def make(**kw: object) -> LocalSystem:
        if kw.get("backend") == "opendht" and not _has_opendht():
            pytest.skip("OpenDHT is an optional package (pip install 'opendht>=3.0'); make test installs it on "
                        "x86_64 and aarch64, the machines with wheels")
        system = LocalSystem(SystemSpec(**kw), tmp_path / ("system%d" % len(systems)))  # type: ignore[arg-type]
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.close()
