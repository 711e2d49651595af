"""Run the MicroPython tests of a package under every interpreter: import `word` and
`pytest_generate_tests` into its conftest.py.

The 64-bit unix port from PyPI always runs; a 32-bit build (scripts/build-micropython32.sh) runs too
when $QIS_MICROPYTHON32 names it: tests marked `micropython` are then parametrized [mp64]/[mp32].
With one interpreter the test ids stay as they are.
"""

from __future__ import annotations

import pytest
from qis_firmware import emulate

from support import micropython as mp


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    words = mp.word_sizes()
    if ("word" in metafunc.fixturenames and len(words) > 1
            and metafunc.definition.get_closest_marker("micropython") is not None):
        metafunc.parametrize("word", words, indirect=True, ids=["mp" + w for w in words])


@pytest.fixture(autouse=True)
def word(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """"64" or "32": the interpreter this test's MicroPython code runs under. Every path that starts
    MicroPython (support.micropython.run_micropython, qis_firmware.emulate.spawn, tests/device's
    devsupport) looks the executable up through these two functions, so swapping them switches the
    whole test."""
    chosen = getattr(request, "param", "64")
    if chosen == "32":
        exe = mp.micropython32_executable()
        assert exe is not None
        monkeypatch.setattr(mp, "micropython_executable", lambda: exe)
        monkeypatch.setattr(emulate, "micropython_executable", lambda: exe)
    return chosen
