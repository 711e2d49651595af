"""The shared core fits a small board: import qis and fingerprint one reading at -X heapsize=32K,
compiled to .mpy as a board would run it, with nothing of the source tree on the path."""

from __future__ import annotations

from pathlib import Path

import pytest
from qis.schema import load_schema
from support.micropython import ROOT, MicroPythonError, run_micropython
from support.mpy import compile_tree

READING = {"machine_class": "pump", "temperature_c": 61.3, "vibration_mm_s": 3.2, "load_pct": 72, "current_a": 12.5}

SCRIPT = """
import gc, sys
from qis.schema import load_schema
schema = load_schema(%(schema)r)
fp = schema.fingerprint(%(reading)r)
print("HASHED" if "qis.fingerprint" in sys.modules else "LAZY")
gc.collect()
print("OK", "".join("%%02x" %% b for b in fp.address), ",".join(str(q) for q in fp.vector), gc.mem_free())
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpy")
    assert compile_tree(ROOT / "shared", "qis", out)
    return out


def run_isolated(compiled: Path, heap: str) -> str:
    script = SCRIPT % {"schema": str(compiled / "qis" / "schemas" / "machine_health.json"), "reading": READING}
    # Only the compiled tree on the path: micropython_path() appends shared/ and device/ after it,
    # so drop .py sources from reach by running from the compiled copy first (it shadows them).
    return run_micropython(script, heap=heap, extra_path=[compiled], cwd=compiled)


@pytest.mark.micropython
def test_import_and_fingerprint_in_32k_heap(compiled: Path) -> None:
    out = run_isolated(compiled, "32K")
    lazy, status, address, vector, _free = out.split()
    # a board sends fields and vector only: the address (SHA-256 of the canonical form) is computed,
    # and qis.fingerprint loaded, only when something reads it (the gateway; this test below)
    assert lazy == "LAZY"
    schema = load_schema(str(ROOT / "shared" / "qis" / "schemas" / "machine_health.json"))
    expected = schema.fingerprint(READING)
    assert status == "OK"
    assert address == expected.address.hex()
    assert vector == ",".join(str(q) for q in expected.vector)


@pytest.mark.micropython
def test_a_heap_far_too_small_fails_loudly(compiled: Path) -> None:
    """The 32K figure is meaningful: the same work at 8K runs out of memory (MemoryError, not a hang)."""
    with pytest.raises(MicroPythonError) as info:
        run_isolated(compiled, "8K")
    assert "MemoryError" in info.value.stderr + info.value.stdout
