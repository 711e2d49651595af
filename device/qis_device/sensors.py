"""Sensor drivers: each is a callable returning a dict of raw readings (input name -> number or label).

How it works: make_sensor(spec, schema, fixed) builds the driver named by spec["driver"]:
- "sim": SimSensor, deterministic (own seeded generator, not the global `random`), derived from the
  schema: every bands field gets a value inside one of its bands, every label field one of its labels,
  every other continuous input a value near its centre. mode "cycle" (default) walks all band
  combinations in turn (machine_health: 4 x 4 x 4 = 64 situations, each within 64 readings), mode
  "random" picks bands at random. "float32": true rounds every value through struct "<f", emulating a
  board's 32-bit floats on the host.
- "adc", "bme280": real drivers in qis_device.hw, imported only when configured (they need `machine`,
  which the unix port lacks).
- "multi": {"driver": "multi", "sensors": [spec, ...]} merges several drivers' readings.
Labels from the config's "fixed" are merged into every reading by the caller (app.py), so the sim does
not invent them.
"""


class SimSensor:
    def __init__(self, schema, seed=1, mode="cycle", fixed=None, float32=False):
        if mode not in ("cycle", "random"):
            raise ValueError("config sensor: sim mode must be \"cycle\" or \"random\", not %r" % (mode,))
        self.state = (seed * 2654435761 + 1) & 0xFFFFFF
        self.mode = mode
        self.count = 0
        self.float32 = float32
        fixed = fixed or {}
        self.bands = []  # (input, edges)
        self.labels = []  # (input, labels)
        covered = []
        for field in schema.categorical:
            if field.input in fixed or field.input in covered:
                continue
            covered.append(field.input)
            if field.kind == "bands":
                self.bands.append((field.input, field.edges))
            elif field.labels:
                self.labels.append((field.input, field.labels))
            else:
                self.labels.append((field.input, ["x"]))
        self.free = []  # continuous inputs not set by a band: (input, center, scale)
        for cont in schema.continuous:
            if cont.input not in covered and cont.input not in fixed:
                covered.append(cont.input)
                self.free.append((cont.input, cont.center, cont.scale))

    def _rand(self):
        """Uniform float in [0, 1): a 24-bit LCG (Numerical Recipes constants, truncated)."""
        self.state = (self.state * 1664525 + 1013904223) & 0xFFFFFF
        return self.state / 16777216.0

    def _pick(self, n, radix):
        if self.mode == "random":
            return int(self._rand() * n) % n
        return (self.count // radix) % n

    def _f(self, value):
        if self.float32:
            import struct

            return struct.unpack("<f", struct.pack("<f", value))[0]
        return value

    def __call__(self):
        reading = {}
        radix = 1
        for name, edges in self.bands:
            n = len(edges) + 1
            band = self._pick(n, radix)
            radix *= n
            span = (edges[-1] - edges[0]) / len(edges) if len(edges) > 1 else (abs(edges[0]) or 1)
            low = edges[band - 1] if band > 0 else edges[0] - span
            high = edges[band] if band < len(edges) else edges[-1] + span
            # stay 2% inside the band so float32 rounding never moves the value across an edge
            value = low + (high - low) * (0.02 + 0.96 * self._rand())
            reading[name] = self._f(value)
        for name, labels in self.labels:
            reading[name] = labels[self._pick(len(labels), radix)]
            radix *= len(labels)
        for name, center, scale in self.free:
            reading[name] = self._f(center + scale * (self._rand() * 4 - 2))
        self.count += 1
        return reading


class MultiSensor:
    def __init__(self, sensors):
        self.sensors = sensors

    def __call__(self):
        reading = {}
        for sensor in self.sensors:
            part = sensor()
            for key in part:
                reading[key] = part[key]
        return reading


def make_sensor(spec, schema, fixed=None):
    """Build the configured driver; ConfigError with the reason for anything unknown or missing."""
    driver = spec.get("driver")
    if driver == "sim":
        return SimSensor(schema, spec.get("seed", 1), spec.get("mode", "cycle"), fixed, spec.get("float32", False))
    if driver == "multi":
        parts = spec.get("sensors")
        if not isinstance(parts, list) or not parts:
            raise ValueError("config sensor: multi needs \"sensors\": [driver specs]")
        return MultiSensor([make_sensor(p, schema, fixed) for p in parts])
    if driver in ("adc", "bme280"):
        from qis_device import hw  # needs `machine`: never imported on the unix port unless configured

        return hw.make(spec)
    raise ValueError("config sensor: unknown driver %r; use \"sim\", \"adc\", \"bme280\" or \"multi\"" % (driver,))
