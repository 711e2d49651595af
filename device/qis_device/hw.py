"""Real sensor drivers for boards, written for `machine` (imported lazily: never on the unix port).

- AdcSensor: {"driver": "adc", "pin": 34, "input": "current_a", "scale": 0.0005, "offset": 0,
  "samples": 8, "atten": 3}. reading[input] = offset + scale * mean(read_u16()) over `samples` reads;
  "atten" (ESP32 only) is passed to ADC.atten (3 = 11 dB, full 0-3.3 V range). "pin" is a GPIO
  number (ADC(Pin(n))); on ESP8266, whose ADC takes no Pin, it is the ADC id: 0 = the A0 input.
- Bme280: {"driver": "bme280", "i2c": 0, "scl": 22, "sda": 21, "addr": 118, "freq": 100000,
  "names": {"temperature": "temperature_c", "humidity": "humidity_pct", "pressure": "pressure_hpa"}}.
  Bosch BME280 (chip id 0x60; a BMP280, 0x58, gives no humidity) in forced mode, oversampling x1,
  compensated with the floating-point formulas of the BME280 datasheet section 8.1. On ESP8266 (software
  I2C, no bus id) "scl" and "sda" are required and "i2c" is ignored. The calibration
  is read once; each reading costs one 8-byte burst read into a preallocated buffer.
"""

import time

import machine


class AdcSensor:
    def __init__(self, spec):
        if "pin" not in spec or "input" not in spec:
            raise ValueError("config sensor adc: needs \"pin\" (GPIO number) and \"input\" (reading name)")
        try:
            self.adc = machine.ADC(machine.Pin(spec["pin"]))  # ESP32, RP2: a Pin object
        except TypeError:  # ESP8266: ADC(0) is the A0/TOUT input (0-1 V), and it takes no Pin
            self.adc = machine.ADC(spec["pin"])
        if "atten" in spec and hasattr(self.adc, "atten"):
            self.adc.atten(spec["atten"])
        self.input = spec["input"]
        self.scale = spec.get("scale", 1)
        self.offset = spec.get("offset", 0)
        self.samples = max(1, spec.get("samples", 8))

    def __call__(self):
        total = 0
        for _ in range(self.samples):
            total += self.adc.read_u16()
        return {self.input: self.offset + self.scale * total / self.samples}


def _s16(lo, hi):
    v = lo | hi << 8
    return v - 65536 if v > 32767 else v


def _s12(v):
    return v - 4096 if v > 2047 else v


class Bme280:
    def __init__(self, spec, i2c=None):
        if i2c is None:
            pins = {}
            if "scl" in spec:
                pins["scl"] = machine.Pin(spec["scl"])
                pins["sda"] = machine.Pin(spec["sda"])
            try:
                i2c = machine.I2C(spec.get("i2c", 0), freq=spec.get("freq", 100000), **pins)
            except TypeError:  # ESP8266: I2C is software only and takes no bus id, just scl and sda
                i2c = machine.I2C(freq=spec.get("freq", 100000), **pins)
        self.i2c = i2c
        self.addr = spec.get("addr", 0x76)
        names = spec.get("names") or {}
        self.n_t = names.get("temperature", "temperature_c")
        self.n_h = names.get("humidity", "humidity_pct")
        self.n_p = names.get("pressure", "pressure_hpa")
        chip = self._read(0xD0, 1)[0]
        if chip not in (0x60, 0x58):
            raise OSError("no BME280/BMP280 at I2C address 0x%02x (chip id 0x%02x)" % (self.addr, chip))
        self.humidity = chip == 0x60
        c = self._read(0x88, 26)
        self.t1 = c[0] | c[1] << 8
        self.t2 = _s16(c[2], c[3])
        self.t3 = _s16(c[4], c[5])
        self.p1 = c[6] | c[7] << 8
        self.p = [_s16(c[i], c[i + 1]) for i in range(8, 24, 2)]  # P2..P9
        if self.humidity:
            self.h1 = c[25]
            h = self._read(0xE1, 7)
            self.h2 = _s16(h[0], h[1])
            self.h3 = h[2]
            self.h4 = _s12(h[3] << 4 | h[4] & 0x0F)
            self.h5 = _s12(h[5] << 4 | h[4] >> 4)
            self.h6 = h[6] - 256 if h[6] > 127 else h[6]
            self.i2c.writeto_mem(self.addr, 0xF2, b"\x01")  # humidity oversampling x1
        self.buf = bytearray(8)

    def _read(self, reg, n):
        return self.i2c.readfrom_mem(self.addr, reg, n)

    def raw(self):
        """(adc_T, adc_P, adc_H) of one forced-mode measurement."""
        self.i2c.writeto_mem(self.addr, 0xF4, b"\x25")  # osrs_t x1, osrs_p x1, forced mode
        for _ in range(20):
            if not self._read(0xF3, 1)[0] & 0x08:
                break
            time.sleep_ms(2)
        self.i2c.readfrom_mem_into(self.addr, 0xF7, self.buf)
        b = self.buf
        return (b[3] << 12 | b[4] << 4 | b[5] >> 4, b[0] << 12 | b[1] << 4 | b[2] >> 4, b[6] << 8 | b[7])

    def compensate(self, adc_t, adc_p, adc_h):
        """Datasheet 8.1 (double precision): (deg C, Pa, %RH or None)."""
        v1 = (adc_t / 16384.0 - self.t1 / 1024.0) * self.t2
        v2 = adc_t / 131072.0 - self.t1 / 8192.0
        v2 = v2 * v2 * self.t3
        t_fine = v1 + v2
        temp = t_fine / 5120.0
        p2, p3, p4, p5, p6, p7, p8, p9 = self.p
        v1 = t_fine / 2.0 - 64000.0
        v2 = v1 * v1 * p6 / 32768.0
        v2 = v2 + v1 * p5 * 2.0
        v2 = v2 / 4.0 + p4 * 65536.0
        v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
        v1 = (1.0 + v1 / 32768.0) * self.p1
        pres = 0.0
        if v1 != 0:
            pres = 1048576.0 - adc_p
            pres = (pres - v2 / 4096.0) * 6250.0 / v1
            v1 = p9 * pres * pres / 2147483648.0
            v2 = pres * p8 / 32768.0
            pres = pres + (v1 + v2 + p7) / 16.0
        hum = None
        if self.humidity:
            h = t_fine - 76800.0
            h = (adc_h - (self.h4 * 64.0 + self.h5 / 16384.0 * h)) * (
                self.h2 / 65536.0 * (1.0 + self.h6 / 67108864.0 * h * (1.0 + self.h3 / 67108864.0 * h)))
            h = h * (1.0 - self.h1 * h / 524288.0)
            hum = 100.0 if h > 100.0 else (0.0 if h < 0.0 else h)
        return temp, pres, hum

    def __call__(self):
        temp, pres, hum = self.compensate(*self.raw())
        out = {self.n_t: temp, self.n_p: pres / 100.0}
        if hum is not None:
            out[self.n_h] = hum
        return out


def make(spec):
    if spec["driver"] == "adc":
        return AdcSensor(spec)
    return Bme280(spec)
