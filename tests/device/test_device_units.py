"""Board units under the MicroPython unix port (compiled .mpy): config checks, flash store, simulated
sensor, BME280/ADC drivers against a mock `machine`, float32 emulation, mpy-cross of every module."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from devsupport import SCHEMA_SRC, SECRET_HEX
from qis.schema import load_schema
from qis_firmware import emulate
from qis_firmware.deploy import BOARD_DIR
from support.micropython import ROOT, run_micropython
from support.mpy import mpy_cross_executable

pytestmark = pytest.mark.micropython

GOOD = {"site": "site-a", "device": "pump-01", "secret": SECRET_HEX, "broker": {"host": "127.0.0.1"},
        "schema": "machine_health.json"}


def run(script: str, mpy_dir: Path, heap: str = "128K", **kw: object) -> str:
    return run_micropython(script, heap=heap, extra_path=[mpy_dir], **kw)  # type: ignore[arg-type]


# --- config -------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({k: v for k, v in GOOD.items() if k != "secret"}, "'secret' is missing"),
    ({**GOOD, "secret": "zz" * 32}, "non-hex"),
    ({**GOOD, "secret": "ab"}, "64 hex"),
    ({**GOOD, "broker": {"port": 1883}}, "broker.host"),
    ({**GOOD, "broker": {"host": "h", "port": 70000}}, "broker.port"),
    ({**GOOD, "device": "pump/01"}, "device"),
    ({**GOOD, "interval_s": -1}, "interval_s"),
    ({**GOOD, "queue_max": 0}, "queue_max"),
    ({**GOOD, "fixed": {"machine_class": 1.5}}, "fixed"),
    ({**GOOD, "sensor": {"seed": 1}}, "driver"),
]


@pytest.mark.parametrize("raw,needle", BAD_CONFIGS, ids=[n for _, n in BAD_CONFIGS])
def test_bad_config_is_a_clear_message_on_both_runtimes(raw: dict, needle: str, mpy_dir: Path) -> None:
    from qis_device.config import ConfigError, check_config

    with pytest.raises(ConfigError, match=None) as info:
        check_config(raw)
    assert needle in str(info.value)
    out = run("from qis_device.config import check_config\n"
              "try:\n    check_config(%r)\nexcept ValueError as e:\n    print('ERR', e)\n" % (raw,), mpy_dir)
    assert out.startswith("ERR") and needle in out


def test_config_defaults_filled(mpy_dir: Path) -> None:
    from qis_device.config import check_config

    cfg = check_config(GOOD)
    assert cfg["key"] == bytes.fromhex(SECRET_HEX)
    assert cfg["broker"]["port"] == 1883 and cfg["interval_s"] == 10 and cfg["queue_max"] == 200
    assert cfg["client_id"] == "qis-site-a-pump-01"


def test_board_with_bad_config_prints_reason_and_exits_2(tmp_path: Path, mpy_dir: Path) -> None:
    cfg = tmp_path / "device.json"
    cfg.write_text(json.dumps({**GOOD, "secret": "12"}))
    proc = emulate.spawn(cfg, "128K", 1, mpy_dir, stdout=-1, stderr=-1, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "CONFIG ERROR" in out and "secret must be 64 hex characters" in out
    cfg.write_text("{not json")
    assert emulate.main(["--config", str(cfg), "--code", str(mpy_dir)]) == 2


# --- flash store ----------------------------------------------------------------------------------------

STORE = """
import os
from qis_device.store import FrameQueue, SeqCounter
d = %(dir)r
try:
    os.mkdir(d + "/q")
except OSError:
    pass
s = SeqCounter(d, 4)
seqs = [s.take() for i in range(%(take)d)]
q = FrameQueue(d, %(qmax)d)
for i in range(%(push)d):
    q.push(b"f", b"frame-%%d" %% i)
h = q.peek()  # (kind, memoryview of the frame)
print("SEQS", seqs, "LEN", len(q), "DROPPED", q.dropped, "HEAD", h and (h[0], bytes(h[1])))
"""


def test_seq_is_write_ahead_and_never_reused_after_a_reset(tmp_path: Path, mpy_dir: Path) -> None:
    out1 = run(STORE % {"dir": str(tmp_path), "take": 6, "qmax": 3, "push": 0}, mpy_dir)
    assert "SEQS [0, 1, 2, 3, 4, 5]" in out1
    assert (tmp_path / "seq").read_text() == "8"  # two blocks of 4 reserved before use
    out2 = run(STORE % {"dir": str(tmp_path), "take": 2, "qmax": 3, "push": 0}, mpy_dir)
    assert "SEQS [8, 9]" in out2  # 6 and 7 skipped, nothing reused


def test_queue_survives_a_reset_drops_oldest_and_counts(tmp_path: Path, mpy_dir: Path) -> None:
    out1 = run(STORE % {"dir": str(tmp_path), "take": 0, "qmax": 3, "push": 5}, mpy_dir)
    assert "LEN 3 DROPPED 2 HEAD (b'f', b'frame-2')" in out1
    (tmp_path / "q" / "0000000099.tmp").write_bytes(b"torn")  # a write cut by a reset
    out2 = run(STORE % {"dir": str(tmp_path), "take": 0, "qmax": 3, "push": 0}, mpy_dir)
    assert "LEN 3 DROPPED 3 HEAD (b'f', b'frame-2')" in out2  # torn temp file removed and counted
    assert not (tmp_path / "q" / "0000000099.tmp").exists()
    drain = ("from qis_device.store import FrameQueue\nq = FrameQueue(%r, 3)\nout = []\n"
             "while q.peek():\n    out.append(bytes(q.peek()[1]))\n    q.pop()\nprint(out, len(q))\n")
    out3 = run(drain % str(tmp_path), mpy_dir)
    assert "[b'frame-2', b'frame-3', b'frame-4'] 0" in out3


# --- simulated sensor -----------------------------------------------------------------------------------

SIM = """
from qis.schema import load_schema
from qis_device.sim import SimSensor
schema = load_schema(%(schema)r)
sim = SimSensor(schema, %(seed)d, %(mode)r, {"machine_class": "pump"}, %(f32)s)
seen = {}
for i in range(%(n)d):
    r = sim()
    r["machine_class"] = "pump"
    f = schema.categorise(r)
    seen[(f["temp_band"], f["vibration_band"], f["load_band"])] = 1
    if i < 3:
        print("R", sorted(r.items()))
print("SITUATIONS", len(seen))
"""


def test_sim_produces_every_situation_of_machine_health(mpy_dir: Path) -> None:
    out = run(SIM % {"schema": str(SCHEMA_SRC), "seed": 1, "mode": "cycle", "f32": False, "n": 64}, mpy_dir)
    assert "SITUATIONS 64" in out  # 4 temperature x 4 vibration x 4 load bands, all within 64 readings
    again = run(SIM % {"schema": str(SCHEMA_SRC), "seed": 1, "mode": "cycle", "f32": False, "n": 64}, mpy_dir)
    assert again == out  # deterministic for a seed
    other = run(SIM % {"schema": str(SCHEMA_SRC), "seed": 2, "mode": "random", "f32": False, "n": 1000}, mpy_dir)
    assert "SITUATIONS 64" in other and other.splitlines()[0] != out.splitlines()[0]


def test_sim_float32_values_are_float32_representable(mpy_dir: Path) -> None:
    out = run(SIM % {"schema": str(SCHEMA_SRC), "seed": 3, "mode": "cycle", "f32": True, "n": 3}, mpy_dir)
    for line in out.splitlines():
        if line.startswith("R "):
            for _name, value in eval(line[2:]):  # noqa: S307 - our own printed list
                if isinstance(value, float):
                    assert struct.unpack("<f", struct.pack("<f", value))[0] == value


def test_float32_board_bins_and_the_gateway_takes_its_labels(tmp_path: Path, mpy_dir: Path) -> None:
    """A board with 32-bit floats reads 1.4 mm/s as 1.39999997 and bins it to band A, where a float64
    host would say B. The board's labels and integers are what travel; the gateway checks them and
    derives addresses from them without re-binning (docs/protocol.md)."""
    from qis import messages

    f32 = struct.unpack("<f", struct.pack("<f", 1.4))[0]
    reading = {"machine_class": "pump", "temperature_c": 55.0, "vibration_mm_s": f32, "load_pct": 50.0,
               "current_a": 10.0}
    out = run("from qis.schema import load_schema\nfrom qis import messages\n"
              "s = load_schema(%r)\nfp = s.fingerprint(%r)\n"
              "print(messages.encode_fp('pump-01', 7, fp, b'k' * 32).hex())\n" % (str(SCHEMA_SRC), reading), mpy_dir)
    body = messages.decode(bytes.fromhex(out.strip()), b"k" * 32, "fp", "pump-01")
    assert body["fields"]["vibration_band"] == "A"
    host = load_schema(str(SCHEMA_SRC)).categorise({**reading, "vibration_mm_s": 1.4})
    assert host["vibration_band"] == "B"  # what re-binning on the host would have (wrongly) said
    schema = load_schema(str(SCHEMA_SRC))
    schema.check_fields(body["fields"])
    assert all(isinstance(v, (str, int)) for v in body["fields"].values())
    assert all(isinstance(q, int) for q in body["vec"])


# --- hardware drivers against a mock machine -------------------------------------------------------------

MOCK_MACHINE = '''
class Pin:
    OUT = 1
    def __init__(self, n, mode=None):
        self.n = n
class ADC:
    def __init__(self, pin):
        self.values = [1000, 3000]
        self.i = 0
    def atten(self, a):
        self.att = a
    def read_u16(self):
        self.i += 1
        return self.values[self.i % 2]
class I2C:
    def __init__(self, id, freq=100000, scl=None, sda=None):
        self.mem = {}
    def readfrom_mem(self, addr, reg, n):
        return bytes(self.mem.get(reg + i, 0) for i in range(n))
    def readfrom_mem_into(self, addr, reg, buf):
        for i in range(len(buf)):
            buf[i] = self.mem.get(reg + i, 0)
    def writeto_mem(self, addr, reg, data):
        self.mem[reg] = data[0]
'''

BME = """
import struct
import machine
from qis_device import hw
i2c = machine.I2C(0)
cal = struct.pack("<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
for i, b in enumerate(cal):
    i2c.mem[0x88 + i] = b
i2c.mem[0xD0] = 0x58  # BMP280: no humidity
adc_t, adc_p = 519888, 415148
raw = [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4, adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4, 0, 0]
for i, b in enumerate(raw):
    i2c.mem[0xF7 + i] = b
s = hw.Bme280({"driver": "bme280"}, i2c)
print("BME", s())
a = hw.make({"driver": "adc", "pin": 34, "input": "current_a", "scale": 0.001, "samples": 4, "atten": 3})
print("ADC", a())
"""


def test_bme280_and_adc_drivers_with_a_mock_machine(tmp_path: Path, mpy_dir: Path) -> None:
    mocks = tmp_path / "mocks"
    mocks.mkdir()
    (mocks / "machine.py").write_text(MOCK_MACHINE)  # shadows the unix port's built-in `machine`
    out = run_micropython(BME, heap="128K", extra_path=[mocks, mpy_dir])
    bme = eval(out.split("BME ", 1)[1].splitlines()[0])  # noqa: S307
    # Bosch datasheet worked example (BMP280 3.12 / BME280 8.1): 25.08 degC, 100653 Pa
    assert abs(bme["temperature_c"] - 25.08) < 0.01
    assert abs(bme["pressure_hpa"] - 1006.53) < 0.02
    assert "humidity_pct" not in bme
    adc = eval(out.split("ADC ", 1)[1].splitlines()[0])  # noqa: S307
    assert adc == {"current_a": pytest.approx(2.0)}  # mean of 1000 and 3000, x 0.001


def test_adc_driver_on_an_esp8266_whose_adc_takes_no_pin(tmp_path: Path, mpy_dir: Path) -> None:
    """ESP8266's machine.ADC(id) takes an int (0 = A0) and raises TypeError for a Pin object."""
    mocks = tmp_path / "mocks"
    mocks.mkdir()
    (mocks / "machine.py").write_text(MOCK_MACHINE.replace("    def __init__(self, pin):\n        self.values",
                                                           "    def __init__(self, pin):\n"
                                                           "        if not isinstance(pin, int):\n"
                                                           "            raise TypeError('can\\'t convert Pin to int')\n"
                                                           "        self.values"))
    out = run_micropython("from qis_device import hw\n"
                          "print('ADC', hw.make({'driver': 'adc', 'pin': 0, 'input': 'load_pct', 'scale': 0.01})())",
                          heap="128K", extra_path=[mocks, mpy_dir])
    assert eval(out.split("ADC ", 1)[1].splitlines()[0]) == {"load_pct": pytest.approx(20.0)}  # noqa: S307


def test_machine_drivers_are_not_imported_on_the_unix_port(tmp_path: Path, mpy_dir: Path) -> None:
    cfg = tmp_path / "device.json"
    cfg.write_text(json.dumps({**GOOD, "broker": {"host": "127.0.0.1", "port": 1}, "state_dir": "st"}))
    (tmp_path / "machine_health.json").write_text(SCHEMA_SRC.read_text())
    out = run("import sys\nfrom qis_device.start import prepare\nr = prepare(%r)\n"
              "print(sorted(m for m in sys.modules if m.startswith('qis')))\n" % str(cfg), mpy_dir)
    for name in ("qis_device.hw", "qis_device.periph", "qis_device.wifi", "qis_device.config", "qis.schemaparse"):
        assert name not in out


# --- compilation ------------------------------------------------------------------------------------------

def test_every_board_module_compiles_with_mpy_cross(tmp_path: Path) -> None:
    mpy_cross = mpy_cross_executable()
    out = emulate.build_mpy(tmp_path / "all")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*.mpy")}
    sources = {rel.with_suffix(".mpy").as_posix() for _, rel in emulate.source_files()}
    assert names == sources
    assert {"qis_device/mqtt.mpy", "qis_device/hw.mpy", "qis_device/periph.mpy", "qis_device/wifi.mpy",
            "qis/messages.mpy"} <= names
    for p in out.rglob("*.mpy"):
        assert p.read_bytes()[:2] == b"M\x06"  # mpy v6: loads on every current MicroPython port
    for entry in ("main.py", "boot.py"):  # stay .py on the board (MicroPython runs them by name)
        proc = subprocess.run([mpy_cross, "-o", str(tmp_path / (entry + ".mpy")), str(BOARD_DIR / entry)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


# --- packaging ------------------------------------------------------------------------------------------

def test_package_json_installs_every_board_module(tmp_path: Path) -> None:
    """`mpremote mip install ./device/package.json` (mpremote's own installer, a fake board filesystem)
    puts every board module under /lib; main.py, device.json and the schema go to / with mpremote cp."""
    from mpremote import mip

    class FakeBoard:
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        def fs_exists(self, path: str) -> bool:
            return True

        def fs_mkdir(self, path: str) -> None:
            pass

        def fs_writefile(self, path: str, data: bytes, progress_callback: object = None) -> None:
            self.files[path] = data

    board = FakeBoard()
    mip._install_json(board, str(ROOT / "device" / "package.json"), None, "/lib", None, False)
    for src, rel in emulate.source_files():
        assert board.files["/lib/" + rel.as_posix()] == src.read_bytes()
    assert len(board.files) == len(emulate.source_files())


def test_manifest_freezes_qis_and_qis_device() -> None:
    calls: list[tuple] = []

    def include(path: str, **kw: object) -> None:
        calls.append(("include", (path,), kw))
        if not path.startswith("$("):  # ours, relative to the including file: follow it
            run((ROOT / "firmware" / path).read_text())

    def run(text: str) -> None:
        env: dict = {name: (lambda *a, _n=name, **k: calls.append((_n, a, k)))
                     for name in ("metadata", "package", "module", "require", "freeze")}
        env["include"] = include
        exec(compile(text, "manifest.py", "exec"), env)  # noqa: S102

    run((ROOT / "firmware" / "manifest.py").read_text())
    packages = {a[0]: k["base_path"] for n, a, k in calls if n == "package"}
    assert set(packages) == {"qis", "qis_device"}
    for name, base in packages.items():
        assert (ROOT / "firmware" / base / name / "__init__.py").is_file()
    assert ("include", ("$(PORT_DIR)/boards/manifest.py",), {}) in calls
    assert ("include", ("manifest_qis.py",), {}) in calls  # what scripts/build-micropython32.sh freezes too


MOCK_NETWORK = '''
STA_IF = 0
class WLAN:
    polls = 0
    up_after = 3
    def __init__(self, i):
        pass
    def active(self, on):
        pass
    def isconnected(self):
        WLAN.polls += 1
        return WLAN.up_after is not None and WLAN.polls > WLAN.up_after
    def connect(self, ssid, password):
        WLAN.polls = 0
    def disconnect(self):
        pass
    def ifconfig(self):
        return ("10.0.0.7", "255.255.255.0", "10.0.0.1", "10.0.0.1")
'''


def test_wifi_one_bounded_attempt_then_the_link_backoff(tmp_path: Path, mpy_dir: Path) -> None:
    """A WiFi that never comes up costs one bounded attempt (the watchdog fed meanwhile), not a loop:
    the board goes back to taking readings and retries with the link's reconnect backoff."""
    mocks = tmp_path / "mocks"
    mocks.mkdir()
    (mocks / "network.py").write_text(MOCK_NETWORK)
    out = run_micropython("""
import time, network
from qis_device.wifi import wifi_connect, wifi_ok
fed = []
w = {"ssid": "plant-floor", "password": "x"}
print("OK", wifi_connect(w, 2, lambda: fed.append(1)), wifi_ok(w))
network.WLAN.up_after = None
t0 = time.ticks_ms()
print("DOWN", wifi_connect(w, 1, lambda: fed.append(1)), time.ticks_diff(time.ticks_ms(), t0) < 1600, len(fed) > 3)
""", heap="128K", extra_path=[mocks, mpy_dir])
    assert "OK True True" in out
    assert "DOWN False True True" in out


MOCK_MACHINE_PERIPH = '''
log = []
class WDT:
    def __init__(self, timeout=None):
        log.append(("wdt", timeout))
    def feed(self):
        log.append("feed")
class Pin:
    OUT = 1
    def __init__(self, n, mode=None):
        self.n = n
    def value(self, v):
        log.append(("pin", self.n, v))
def deepsleep(ms):
    log.append(("deepsleep", ms))
'''


def test_board_peripherals_with_a_mock_machine(tmp_path: Path, mpy_dir: Path) -> None:
    mocks = tmp_path / "mocks"
    mocks.mkdir()
    (mocks / "machine.py").write_text(MOCK_MACHINE_PERIPH)
    out = run_micropython("""
import machine
from qis_device import board
from qis_device.periph import Led, Watchdog, deep_sleep
print("UNIX_NULL", type(board.watchdog(5000)).__name__, type(board.led(2)).__name__)
w = Watchdog(30000)
w.feed()
Led(2).blink_confidence(650)
deep_sleep(1234)
print("LOG", machine.log)
""", heap="128K", extra_path=[mocks, mpy_dir])
    assert "UNIX_NULL _Null _Null" in out  # the unix port never arms a watchdog or drives pins
    log = eval(out.split("LOG ", 1)[1])  # noqa: S307
    assert log[0] == ("wdt", 30000) and log[1] == "feed"
    assert [e for e in log if e[0] == "pin"].count(("pin", 2, 1)) == 4  # 650 permille -> 4 blinks
    assert log[-1] == ("deepsleep", 1234)
