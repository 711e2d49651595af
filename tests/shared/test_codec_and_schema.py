"""Frame encoding, schema validation and topic rules on CPython (the golden vectors cover decoding on
both runtimes; these tests cover what the vectors cannot express: encoder errors and schema files)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis import messages, topics
from qis.errors import FrameError, QisError, SchemaError, TopicError
from qis.schema import Fingerprint, Schema, load_schema, quantise
from support.micropython import ROOT

SECRET = b"s" * 32
MACHINE = ROOT / "shared" / "qis" / "schemas" / "machine_health.json"
READING = {"machine_class": "fan", "temperature_c": 45.0, "vibration_mm_s": 2.0, "load_pct": 50, "current_a": 9.0}


def test_fp_frame_round_trip() -> None:
    fp = load_schema(str(MACHINE)).fingerprint(READING)
    body = messages.decode(messages.encode_fp("fan-1", 41, fp, SECRET), SECRET, kind="fp", device="fan-1")
    assert (body["seq"], body["fields"], body["vec"]) == (41, fp.fields, fp.vector)


def test_outcome_and_summary_round_trip() -> None:
    out = messages.decode(messages.encode_outcome("fan-1", 42, 41, "ok", SECRET, value=1.5, weight=0.5), SECRET)
    assert (out["re"], out["label"], out["value"], out["weight"]) == (41, "ok", 1.5, 0.5)
    summary = messages.encode_summary("fan-1", 41, SECRET, SimpleNamespace(
        enough=True, n=9, top=(("ok", 1000),), conf=700, mean=None, level=1, hops=3, ms=12))
    assert messages.decode(summary, SECRET, kind="summary")["top"] == [["ok", 1000]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label": ""},
        {"label": "x" * 65},
        {"weight": 0},
        {"weight": 1.5},
        {"value": float("nan")},
    ],
)
def test_encoder_refuses_bad_outcomes(kwargs: dict) -> None:
    args = {"label": "ok", "value": None, "weight": None} | kwargs
    with pytest.raises(FrameError):
        messages.encode_outcome("fan-1", 2, 1, args["label"], SECRET, value=args["value"], weight=args["weight"])


def test_encoder_refuses_bad_ids_and_seq_and_oversize() -> None:
    fp = Fingerprint({"schema": "x/1", "a": "y" * 1200}, b"\0" * 32, [1])
    with pytest.raises(FrameError, match="exceeds"):
        messages.encode_fp("fan-1", 1, fp, SECRET)
    with pytest.raises(TopicError):
        messages.encode_error("bad/id", 1, "x", "y", SECRET)
    with pytest.raises(FrameError):
        messages.encode_error("fan-1", -1, "x", "y", SECRET)
    with pytest.raises(FrameError):
        messages.encode_error("fan-1", 2**53, "x", "y", SECRET)


@given(st.binary(max_size=1100))
def test_decode_never_raises_anything_but_frame_error(payload: bytes) -> None:
    with pytest.raises(FrameError):
        messages.decode(payload, SECRET)


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.none(), max_size=6))
def test_decode_of_validly_tagged_junk_bodies_is_frame_error_or_valid(body: dict) -> None:
    payload = messages.encode_frame(body, SECRET) if len(json.dumps(body)) < 900 else b""
    try:
        decoded = messages.decode(payload, SECRET)
    except FrameError as exc:
        assert exc.reason in {"size", "tag", "json", "version", "kind", "device", "field", "type"}
    else:
        assert decoded["kind"] in topics.KINDS


def test_every_error_is_a_value_error() -> None:
    assert issubclass(QisError, ValueError)
    with pytest.raises(ValueError):
        topics.parse_topic("nope")


BAD_SCHEMAS = [
    ({}, "schema_id"),
    ({"schema_id": ""}, "schema_id"),
    ({"schema_id": "x/1", "categorical": [{"name": "schema", "kind": "label"}]}, "reserved"),
    ({"schema_id": "x/1", "categorical": [{"name": "t", "kind": "bands", "edges": [2, 1], "labels": ["a", "b", "c"]}]},
     "ascending"),
    ({"schema_id": "x/1", "categorical": [{"name": "t", "kind": "bands", "edges": [1], "labels": ["a"]}]}, "labels"),
    ({"schema_id": "x/1", "categorical": [{"name": "t", "kind": "ranges"}]}, "kind"),
    ({"schema_id": "x/1", "continuous": [{"name": "c", "scale": 0}]}, "scale"),
    ({"schema_id": "x/1", "categorical": [{"name": "a", "kind": "label"}], "coarser": [["b"]]}, "unknown field"),
    ({"schema_id": "x/1", "categorical": [{"name": "a", "kind": "label"}, {"name": "a", "kind": "label"}]}, "twice"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SCHEMAS)
def test_bad_schemas_are_named_errors(spec: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Schema(spec)


def test_schema_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(SchemaError, match="broken.json"):
        load_schema(str(broken))


def test_readings_that_do_not_fit_are_schema_errors() -> None:
    schema = load_schema(str(MACHINE))
    with pytest.raises(SchemaError, match="machine_class"):
        schema.fingerprint(READING | {"machine_class": "boat"})
    with pytest.raises(SchemaError, match="temperature_c"):
        schema.fingerprint({k: v for k, v in READING.items() if k != "temperature_c"})
    with pytest.raises(SchemaError, match="not a number"):
        schema.fingerprint(READING | {"vibration_mm_s": "high"})
    with pytest.raises(SchemaError, match="finite"):
        schema.fingerprint(READING | {"current_a": float("inf")})


def test_band_edges_and_levels() -> None:
    schema = load_schema(str(MACHINE))
    labels = [schema.categorise(READING | {"temperature_c": t})["temp_band"] for t in (39.999, 40, 59.9, 60, 80, 200)]
    assert labels == ["cool", "normal", "normal", "warm", "hot", "hot"]
    fields = schema.categorise(READING)
    levels = schema.levels(fields)
    assert levels[0] == fields and levels[-1] == {"schema": "machine-health/1", "machine_class": "fan"}
    assert len(set(schema.level_addresses(fields))) == len(levels)
    schema.check_fields(fields)
    with pytest.raises(SchemaError):
        schema.check_fields(fields | {"extra": "x"})
    with pytest.raises(SchemaError):
        schema.check_fields(fields | {"temp_band": "lukewarm"})


def test_quantise_clips_and_keeps_zero() -> None:
    assert quantise([0.0, 0.0]) == [0, 0]
    assert quantise([3.0, 4.0]) == [76, 102]  # 0.6*127 = 76.2, 0.8*127 = 101.6
    assert max(abs(q) for q in quantise([1e9, -1e9, 1])) <= 127
