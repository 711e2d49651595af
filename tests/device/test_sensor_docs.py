"""docs/flashing.md "Choosing a real sensor": the sensor configs it shows work, and the default is visible.

Each example (a JSON block after `<!-- sensor-example: CHIP -->`) is merged into a device.json and run
through the board's own start-up (qis_device.start.prepare) under the MicroPython unix port, with a
stand-in `machine` module that behaves like that chip's (ESP8266: ADC takes an id, I2C takes no bus id):
one reading must carry every input of machine_health.json and fingerprint without error.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from devsupport import SCHEMA_SRC, board_config, run_board, stats
from support.micropython import ROOT, run_micropython

pytestmark = pytest.mark.micropython

DOC = ROOT / "docs" / "flashing.md"

# BME280 calibration (Bosch datasheet worked example), chip id 0x60, and one raw measurement
_CAL = struct.pack("<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
_ADC_T, _ADC_P = 519888, 415148
_RAW = [_ADC_P >> 12, (_ADC_P >> 4) & 0xFF, (_ADC_P & 0xF) << 4, _ADC_T >> 12, (_ADC_T >> 4) & 0xFF,
        (_ADC_T & 0xF) << 4, 0x6B, 0x00]
_MEM = {0xD0: 0x60, 0xA1: 75, **{0x88 + i: b for i, b in enumerate(_CAL)},
        **{0xE1 + i: b for i, b in enumerate(bytes([0x6A, 0x01, 0x00, 0x13, 0x27, 0x03, 0x1E]))},
        **{0xF7 + i: b for i, b in enumerate(_RAW)}}

MOCK_MACHINE = """
CHIP = %(chip)r
MEM = %(mem)r
class Pin:
    def __init__(self, n, mode=None):
        self.n = n
class ADC:
    def __init__(self, src):
        if CHIP == "esp8266" and not isinstance(src, int):
            raise TypeError("can't convert Pin to int")
        if CHIP == "esp32" and not isinstance(src, Pin):
            raise TypeError("expecting a Pin")
    def atten(self, a):
        if CHIP != "esp32":
            raise AttributeError("atten")
    def read_u16(self):
        return 32768
class I2C:
    def __init__(self, *bus, scl=None, sda=None, freq=400000):
        if CHIP == "esp8266" and (bus or scl is None or sda is None):
            raise TypeError("function missing required positional argument")
        self.mem = dict(MEM)
    def readfrom_mem(self, addr, reg, n):
        return bytes(self.mem.get(reg + i, 0) for i in range(n))
    def readfrom_mem_into(self, addr, reg, buf):
        for i in range(len(buf)):
            buf[i] = self.mem.get(reg + i, 0)
    def writeto_mem(self, addr, reg, data):
        pass
"""

READ_ONE = """
from qis_device.start import prepare
r = prepare(%r)
if r is None:
    print("FAILED")
else:
    cfg, schema, sensor, state_dir = r
    reading = sensor()
    for k in cfg["fixed"]:
        reading[k] = cfg["fixed"][k]
    fp = schema.fingerprint(reading)
    print("READING", sorted(reading))
    print("FIELDS", sorted(fp.fields.items()))
"""


def doc_examples() -> list[tuple[str, dict]]:
    text = DOC.read_text()
    section = text.split("## Choosing a real sensor", 1)[1].split("\n## ", 1)[0]
    return [(chip, json.loads(block)) for chip, block in
            re.findall(r"<!-- sensor-example: (\w+) -->\n```json\n(.*?)\n```", section, re.S)]


def test_the_doc_shows_an_example_per_chip_family() -> None:
    assert [chip for chip, _ in doc_examples()] == ["esp32", "esp8266"]


@pytest.mark.parametrize("chip,example", doc_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_sensor_config_reads_every_schema_input(tmp_path: Path, mpy_dir: Path, chip: str,
                                                           example: dict) -> None:
    cfg = board_config(tmp_path / "board", 1, **example)
    mocks = tmp_path / "mocks"
    mocks.mkdir()
    (mocks / "machine.py").write_text(MOCK_MACHINE % {"chip": chip, "mem": _MEM})
    out = run_micropython(READ_ONE % str(cfg), heap="256K", extra_path=[mocks, mpy_dir], cwd=cfg.parent)
    assert "FAILED" not in out and "CONFIG ERROR" not in out, out
    schema = json.loads(SCHEMA_SRC.read_text())
    inputs = {f["input"] for f in schema["categorical"] + schema["continuous"]}
    reading = eval(out.split("READING ", 1)[1].splitlines()[0])  # noqa: S307
    assert inputs <= set(reading)
    fields = dict(eval(out.split("FIELDS ", 1)[1].splitlines()[0]))  # noqa: S307
    assert fields["machine_class"] == example["fixed"]["machine_class"]


def test_a_config_without_sensor_says_it_sends_simulated_readings(tmp_path: Path, mpy_dir: Path) -> None:
    """The default (no "sensor" key) is the simulated sensor, and the console says so at every start."""
    cfg = board_config(tmp_path / "board", 1, reconnect_min_ms=50, reconnect_max_ms=100)
    raw = json.loads(cfg.read_text())
    del raw["sensor"]
    cfg.write_text(json.dumps(raw))
    out = run_board(cfg, mpy_dir, 2, "96K")
    assert 'qis: sensor sim: SIMULATED readings (set "sensor" in device.json for a real sensor)' in out
    assert stats(out)["readings"] == 2
