"""Golden vectors (vectors.json) checked by one piece of code on both interpreters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.micropython import ROOT, run_micropython

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors.json"
SCHEMA_DIR = ROOT / "shared" / "qis" / "schemas"


def test_vectors_hold_on_cpython() -> None:
    sys.path.insert(0, str(HERE))
    try:
        import vector_checks
    finally:
        sys.path.remove(str(HERE))
    assert vector_checks.run(str(VECTORS), str(SCHEMA_DIR)) == []


@pytest.mark.micropython
def test_vectors_hold_on_micropython() -> None:
    script = (
        "import vector_checks\n"
        "failures = vector_checks.run(%r, %r)\n"
        "for f in failures: print(f)\n"
        "print('FAILURES', len(failures))\n" % (str(VECTORS), str(SCHEMA_DIR))
    )
    out = run_micropython(script, heap="256K", extra_path=[HERE])
    assert out.strip().endswith("FAILURES 0"), out


def test_vectors_file_is_current() -> None:
    """vectors.json is what make_vectors.py produces: nobody hand-edited the golden bytes."""
    sys.path.insert(0, str(HERE))
    try:
        import make_vectors
    finally:
        sys.path.remove(str(HERE))
    on_disk = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert on_disk["canonical"][0]["canonical"] == make_vectors.canonical_reference(
        make_vectors.CANONICAL_CASES[0]
    ).decode()
    assert on_disk["hmac"] == make_vectors.hmac_cases()
    assert on_disk["fingerprints"] == make_vectors.fingerprint_cases()
    assert on_disk["frames"] == make_vectors.frame_cases()
