"""Regenerate vectors.json: golden inputs and outputs for shared/qis, computed with CPython's own
json, hashlib and hmac modules (never with qis itself), so the vectors are an independent reference.

    .venv/bin/python tests/shared/make_vectors.py   # rewrites tests/shared/vectors.json

The same vectors are checked by vector_checks.py on CPython and under the MicroPython unix port.
Non-ASCII text is stored as raw UTF-8: MicroPython's json turns \\ud83d\\ude00-style escapes into
CESU-8 garbage instead of the character, so the file must not rely on them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE.parents[1] / "shared" / "qis" / "schemas"


def canonical_reference(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


CANONICAL_CASES = [
    {"schema": "machine-health/1", "machine_class": "pump", "temp_band": "warm"},
    {"b": 1, "a": True, "c": False, "d": 0, "e": -7},
    {"big": 2**70, "neg": -(2**64) - 1},
    {"quote": 'say "hi"', "backslash": "a\\b", "slash": "a/b"},
    {"ctrl": "\x00\x01\x1f\x7f", "ws": "\t\n\r\b\f"},
    {"café": "naïve", "emoji": "\U0001f600", "cjk": "温度", "bmp_edge": "\uffff"},
    {"": "empty key", "Z": 1, "a": 2, "_": 3},
    {},
]

HMAC_KEY_LENGTHS = [0, 1, 16, 31, 32, 63, 64, 65, 100, 200]


def hmac_cases() -> list[dict]:
    out = []
    for n in HMAC_KEY_LENGTHS:
        key = bytes((i * 7 + n) & 0xFF for i in range(n))
        msg = ("message for a %d-byte key" % n).encode() * (1 + n // 40)
        out.append({"key": key.hex(), "msg": msg.hex(), "tag": hmac.new(key, msg, "sha256").hexdigest()})
    return out


def reference_vector(schema: dict, reading: dict) -> list[int]:
    """The schema's vector rule written out independently: z-score, clip +-4, L2-normalise, x127, round half up."""
    zs = []
    for spec in schema["continuous"]:
        z = (reading[spec["input"]] - spec.get("center", 0)) / spec.get("scale", 1)
        zs.append(max(-4.0, min(4.0, z)))
    norm = math.sqrt(sum(z * z for z in zs))
    if norm == 0:
        return [0] * len(zs)
    return [max(-127, min(127, math.floor(z * 127 / norm + 0.5))) for z in zs]


def reference_fields(schema: dict, reading: dict) -> dict:
    fields = {"schema": schema["schema_id"]}
    for spec in schema["categorical"]:
        value = reading[spec.get("input", spec["name"])]
        if spec["kind"] == "bands":
            labels, edges = spec["labels"], spec["edges"]
            value = next((labels[i] for i, e in enumerate(edges) if value < e), labels[-1])
        fields[spec["name"]] = value
    return fields


READINGS = {
    "machine_health.json": [
        {"machine_class": "pump", "temperature_c": 61.3, "vibration_mm_s": 3.2, "load_pct": 72, "current_a": 12.5},
        {"machine_class": "fan", "temperature_c": 39.99, "vibration_mm_s": 1.4, "load_pct": 30, "current_a": 10},
        {"machine_class": "compressor", "temperature_c": 80, "vibration_mm_s": 7.1, "load_pct": 95, "current_a": 40},
        {"machine_class": "conveyor", "temperature_c": 55, "vibration_mm_s": 2.8, "load_pct": 0, "current_a": 10},
        {"machine_class": "pump", "temperature_c": -10, "vibration_mm_s": 0.2, "load_pct": 110, "current_a": 0.5},
    ],
    "clinical_triage.json": [
        {"complaint": "chest_pain", "onset": "acute", "age_years": 58, "sex": "male", "risk_score": 6,
         "heart_rate_bpm": 112, "systolic_mmhg": 150, "spo2_pct": 94, "temperature_c": 37.2},
        {"complaint": "fever", "onset": "subacute", "age_years": 17, "sex": "female", "risk_score": 2.5,
         "heart_rate_bpm": 95, "systolic_mmhg": 110, "spo2_pct": 98, "temperature_c": 39.1},
    ],
}


def fingerprint_cases() -> list[dict]:
    out = []
    for name, readings in READINGS.items():
        schema = json.loads((SCHEMAS / name).read_text())
        for reading in readings:
            fields = reference_fields(schema, reading)
            levels = [fields] + [
                {"schema": schema["schema_id"], **{k: fields[k] for k in level}} for level in schema["coarser"]
            ]
            out.append({
                "schema": name,
                "reading": reading,
                "fields": fields,
                "address": hashlib.sha256(canonical_reference(fields)).hexdigest(),
                "level_addresses": [hashlib.sha256(canonical_reference(f)).hexdigest() for f in levels],
                "vector": reference_vector(schema, reading),
            })
    return out


def frame(body: dict, secret: bytes) -> str:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (data + hmac.new(secret, data, "sha256").digest()).hex()


def frame_cases() -> list[dict]:
    secret = bytes(range(32))
    fp = {"v": 1, "kind": "fp", "dev": "pump-01", "seq": 7, "schema": "machine-health/1",
          "fields": {"schema": "machine-health/1", "machine_class": "pump"}, "vec": [12, -127, 0]}
    outcome = {"v": 1, "kind": "outcome", "dev": "pump-01", "seq": 8, "re": 7, "label": "bearing_fault",
               "value": 3.5, "weight": 1}
    summary = {"v": 1, "kind": "summary", "dev": "pump-01", "seq": 7, "re": 7, "enough": True, "n": 12,
               "top": [["ok", 750], ["bearing_fault", 250]], "conf": 640, "mean": 2.25, "level": 0,
               "hops": 2, "ms": 14}
    error = {"v": 1, "kind": "error", "dev": "pump-01", "seq": 9, "code": "schema", "msg": "unknown schema"}
    good = [("fp", fp), ("outcome", outcome), ("summary", summary), ("error", error)]
    cases = [{"name": "ok-" + k, "secret": secret.hex(), "payload": frame(b, secret), "ok": b} for k, b in good]
    valid = bytes.fromhex(frame(fp, secret))

    def bad(name: str, payload: bytes, reason: str, **kw: str) -> None:
        cases.append({"name": name, "secret": secret.hex(), "payload": payload.hex(), "reason": reason, **kw})

    bad("wrong-secret", bytes.fromhex(frame(fp, b"another secret")), "tag")
    flipped = bytearray(valid)
    flipped[10] ^= 1
    bad("flipped-body-byte", bytes(flipped), "tag")
    flipped = bytearray(valid)
    flipped[-1] ^= 0x80
    bad("flipped-tag-byte", bytes(flipped), "tag")
    bad("truncated", valid[:-1], "tag")
    bad("tag-only", valid[-32:], "size")
    bad("empty", b"", "size")
    bad("oversize", bytes.fromhex(frame(dict(fp, pad="x" * 1000), secret)), "size")
    bad("not-json", b"{not json" + hmac.new(secret, b"{not json", "sha256").digest(), "json")
    bad("json-list", bytes.fromhex(frame([1, 2], secret)), "json")  # type: ignore[arg-type]
    bad("version-2", bytes.fromhex(frame(dict(fp, v=2), secret)), "version")
    bad("unknown-kind", bytes.fromhex(frame(dict(fp, kind="reboot"), secret)), "kind")
    bad("kind-mismatch", valid, "kind", kind="outcome")
    bad("device-mismatch", valid, "device", device="fan-02")
    bad("seq-string", bytes.fromhex(frame(dict(fp, seq="7"), secret)), "field")
    bad("seq-negative", bytes.fromhex(frame(dict(fp, seq=-1), secret)), "field")
    bad("seq-bool", bytes.fromhex(frame(dict(fp, seq=True), secret)), "field")
    bad("vec-float", bytes.fromhex(frame(dict(fp, vec=[1.5]), secret)), "field")
    bad("vec-range", bytes.fromhex(frame(dict(fp, vec=[128]), secret)), "field")
    bad("fields-float", bytes.fromhex(frame(dict(fp, fields={"schema": "machine-health/1", "t": 1.5}), secret)),
        "field")
    bad("fields-schema-mismatch", bytes.fromhex(frame(dict(fp, schema="other/1"), secret)), "field")
    bad("outcome-weight-zero", bytes.fromhex(frame(dict(outcome, weight=0), secret)), "field")
    bad("outcome-label-empty", bytes.fromhex(frame(dict(outcome, label=""), secret)), "field")
    bad("summary-enough-int", bytes.fromhex(frame(dict(summary, enough=1), secret)), "field")
    bad("summary-top-shape", bytes.fromhex(frame(dict(summary, top=[["ok"]]), secret)), "field")
    return cases


TOPIC_CASES = {
    "valid": [
        ["qis/v1/site-a/pump-01/fp", "site-a", "pump-01", "fp"],
        ["qis/v1/S_1/dev.2/summary", "S_1", "dev.2", "summary"],
        ["qis/v1/a/b/status", "a", "b", "status"],
    ],
    "invalid": [
        "qis/v1/site-a/pump-01", "qis/v2/site-a/pump-01/fp", "qis/v1/site-a/pump-01/fp/extra",
        "qis/v1/+/pump-01/fp", "qis/v1/site-a/#/fp", "qis/v1//pump-01/fp", "qis/v1/site a/pump-01/fp",
        "qis/v1/site-a/pump-01/reboot", "qis/v1/" + "x" * 65 + "/d/fp", "",
    ],
}


def main() -> None:
    vectors = {
        "comment": "Generated by tests/shared/make_vectors.py from CPython's json/hashlib/hmac; do not edit.",
        "canonical": [
            {"fields": f, "canonical": canonical_reference(f).decode(),
             "sha256": hashlib.sha256(canonical_reference(f)).hexdigest(),
             "hmac_key": "swarm-key", "hmac": hmac.new(b"swarm-key", canonical_reference(f), "sha256").hexdigest()}
            for f in CANONICAL_CASES
        ],
        "canonical_errors": [
            {"fields": {"t": 1.5}, "names": "t"},
            {"fields": {"n": None}, "names": "n"},
            {"fields": {"nested": {"a": 1}}, "names": "nested"},
            {"fields": {"list": [1]}, "names": "list"},
        ],
        "hmac": hmac_cases(),
        "fingerprints": fingerprint_cases(),
        "frames": frame_cases(),
        "topics": TOPIC_CASES,
    }
    (HERE / "vectors.json").write_text(json.dumps(vectors, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
