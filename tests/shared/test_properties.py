"""Property tests: canonical form == CPython's json.dumps form; CPython and MicroPython agree on
random inputs; HMAC equals the hmac module for every key length."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.fingerprint import canonical, keyspace_address
from qis.hmac256 import digest_equal, hmac_sha256
from qis.schema import load_schema
from support.micropython import ROOT, run_micropython

# Lone surrogates cannot exist in MicroPython's UTF-8 strings, nor in a UTF-8 file: keep them out.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
VALUES = st.one_of(TEXT, st.integers(min_value=-(2**80), max_value=2**80), st.booleans())
FIELDS = st.dictionaries(TEXT, VALUES, max_size=8)


@given(FIELDS)
def test_canonical_is_json_dumps_sorted_compact(fields: dict) -> None:
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert canonical(fields) == expected
    assert keyspace_address(fields) == hashlib.sha256(expected).digest()


@given(key=st.binary(max_size=300), msg=st.binary(max_size=300))
def test_hmac_equals_stdlib_for_all_key_lengths(key: bytes, msg: bytes) -> None:
    assert hmac_sha256(key, msg) == hmac.new(key, msg, "sha256").digest()


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_digest_equal_matches_equality(a: bytes, b: bytes) -> None:
    assert digest_equal(a, b) is (a == b)
    assert digest_equal(a, a)


@given(FIELDS, st.binary(min_size=1, max_size=80))
def test_keyed_address_is_hmac_of_canonical(fields: dict, key: bytes) -> None:
    assert keyspace_address(fields, swarm_key=key) == hmac.new(key, canonical(fields), "sha256").digest()


MACHINE_READING = st.fixed_dictionaries({
    "machine_class": st.sampled_from(["pump", "fan", "compressor", "conveyor"]),
    "temperature_c": st.floats(-40, 150, allow_nan=False),
    "vibration_mm_s": st.floats(0, 30, allow_nan=False),
    "load_pct": st.integers(0, 120),
    "current_a": st.floats(0, 60, allow_nan=False),
})

AGREEMENT_SCRIPT = """
import json
from qis.fingerprint import canonical, keyspace_address
from qis.schema import load_schema
with open(%(inputs)r, encoding="utf-8") as f:
    data = json.load(f)
schema = load_schema(%(schema)r)
for fields in data["fields"]:
    print("A " + "".join("%%02x" %% b for b in keyspace_address(fields)))
for reading in data["readings"]:
    fp = schema.fingerprint(reading)
    print("F " + "".join("%%02x" %% b for b in fp.address) + " " + ",".join(str(q) for q in fp.vector))
"""


@pytest.mark.micropython
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(FIELDS, min_size=50, max_size=50), readings=st.lists(MACHINE_READING, min_size=50,
                                                                               max_size=50))
def test_micropython_agrees_with_cpython(tmp_path: Path, fields: list[dict], readings: list[dict]) -> None:
    """The generated inputs go through a UTF-8 file to the unix port; every address and vector must match."""
    schema_path = ROOT / "shared" / "qis" / "schemas" / "machine_health.json"
    inputs = tmp_path / "inputs.json"
    # repr-exact floats: json writes the shortest repr, which MicroPython parses to the same double
    # for these magnitudes (checked by the vector comparison itself).
    inputs.write_text(json.dumps({"fields": fields, "readings": readings}, ensure_ascii=False), encoding="utf-8")
    out = run_micropython(AGREEMENT_SCRIPT % {"inputs": str(inputs), "schema": str(schema_path)}, heap="512K")
    schema = load_schema(str(schema_path))
    expected = ["A " + keyspace_address(f).hex() for f in fields]
    for reading in json.loads(inputs.read_text(encoding="utf-8"))["readings"]:
        fp = schema.fingerprint(reading)
        expected.append("F " + fp.address.hex() + " " + ",".join(str(q) for q in fp.vector))
    assert out.splitlines() == expected
