"""Boards compute in 32-bit floats (ESP32, RP2), hosts in 64-bit. The schema's vector rule must keep
a board's int8 vector within 1 per component of the host's; labels and integers, not floats, are hashed.
A board is emulated by rounding every intermediate result to float32 (struct '<f' round trips)."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from qis.schema import CLIP, QUANT_MAX, Schema, load_schema
from support.micropython import ROOT

SCHEMA_PATH = ROOT / "shared" / "qis" / "schemas" / "machine_health.json"


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def board_scaled(schema: Schema, reading: dict) -> list[float]:
    """The same steps as qis.schema up to rounding, each result rounded to float32 as an ESP32 would."""
    zs = []
    for c in schema.continuous:
        z = f32(f32(f32(reading[c.input]) - f32(c.center)) / f32(c.scale))
        zs.append(max(-CLIP, min(CLIP, z)))
    total = 0.0
    for z in zs:
        total = f32(total + f32(z * z))
    if total == 0.0:
        return [0.0] * len(zs)
    factor = f32(QUANT_MAX / f32(math.sqrt(total)))
    return [f32(z * factor) for z in zs]


def board_vector(schema: Schema, reading: dict) -> list[int]:
    return [max(-QUANT_MAX, min(QUANT_MAX, math.floor(f32(x + 0.5)))) for x in board_scaled(schema, reading)]


def host_scaled(schema: Schema, reading: dict) -> list[float]:
    zs = [c.normalise(reading) for c in schema.continuous]
    norm = math.sqrt(sum(z * z for z in zs))
    return [z * QUANT_MAX / norm for z in zs]


READING = st.fixed_dictionaries({
    "machine_class": st.just("pump"),
    "temperature_c": st.floats(-40, 150, allow_nan=False).map(lambda v: round(v, 3)),
    "vibration_mm_s": st.floats(0, 30, allow_nan=False).map(lambda v: round(v, 3)),
    "load_pct": st.integers(0, 120),
    "current_a": st.floats(0, 60, allow_nan=False).map(lambda v: round(v, 3)),
})


@settings(max_examples=2000, deadline=None)
@given(READING)
def test_board_vector_within_one_of_host(reading: dict) -> None:
    schema = load_schema(str(SCHEMA_PATH))
    host = schema.vector(reading)
    board = board_vector(schema, reading)
    assert all(abs(h - b) <= 1 for h, b in zip(host, board, strict=True)), (reading, host, board)


def test_float32_emulation_is_real() -> None:
    """Guard against an emulation that silently computes in float64: before rounding, the board's scaled
    components differ from the host's in most readings; after rounding they stay within 1."""
    schema = load_schema(str(SCHEMA_PATH))
    inexact = 0
    for i in range(2000):
        reading = {"temperature_c": 20 + i * 0.0137, "vibration_mm_s": 0.5 + (i % 97) * 0.071,
                   "load_pct": 50, "current_a": 3 + (i % 53) * 0.37, "machine_class": "pump"}
        inexact += board_scaled(schema, reading) != host_scaled(schema, reading)
        host, board = schema.vector(reading), board_vector(schema, reading)
        assert all(abs(h - b) <= 1 for h, b in zip(host, board, strict=True))
    assert inexact > 1800
