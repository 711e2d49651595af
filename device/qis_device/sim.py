"""The deterministic simulated sensor (see qis_device.sensors for the config and how it covers a schema).

How it works: every bands field of the schema gets a value inside one of its bands, every label
field one of its labels, every other continuous input a value near its centre. mode "cycle" walks all
band combinations in turn (machine_health: 4 x 4 x 4 = 64 situations, each within 64 readings); mode
"random" picks bands with the seeded generator. float32 rounds values through struct "<f".
"""


class SimSensor:
    def __init__(self, schema, seed=1, mode="cycle", fixed=None, float32=False):
        if mode not in ("cycle", "random"):
            raise ValueError("config sensor: sim mode must be cycle or random, not %r" % (mode,))
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
