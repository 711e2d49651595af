"""Schemas: how a raw reading becomes a semantic fingerprint.

A schema is a JSON file, the same on board and gateway:

    {"schema_id": "machine-health/1",
     "categorical": [
        {"name": "machine_class", "kind": "label", "input": "machine_class", "labels": ["pump", "fan"]},
        {"name": "temp_band", "kind": "bands", "input": "temperature_c",
         "edges": [40, 60, 80], "labels": ["cool", "normal", "warm", "hot"]}],
     "continuous": [{"name": "temperature_c", "input": "temperature_c", "center": 50, "scale": 30}],
     "coarser": [["machine_class", "temp_band"], ["machine_class"]]}

How it works:
- "label" fields copy a str/int/bool from the reading (fixed labels from the device config are merged
  into the reading); "labels", when given, lists the allowed values.
- "bands" fields bin a number: value < edges[0] -> labels[0]; edges[i-1] <= value < edges[i] -> labels[i];
  value >= edges[-1] -> labels[-1]. A threshold is a band rule with one edge.
- The categorical dict always carries "schema": schema_id, so two schemas never share an address.
- Continuous fields: z = (x - center) / scale, clipped to +-CLIP, then the vector is L2-normalised and
  quantised to int8 (round half up, x127). Binning and quantising happen on the board, in its own float
  width (32-bit on ESP32/RP2): only labels and integers are hashed and sent, and the gateway never
  re-quantises (a host may differ from a board by 1 per component; tests emulate float32).
- "coarser" lists field sets from finest to coarsest, used when the exact bucket is too sparse.
"""

import math

from qis.errors import SchemaError, why

SCHEMA_FIELD = "schema"
CLIP = 4.0
QUANT_MAX = 127


class Fingerprint:
    """One reading's fingerprint: categorical `fields`, their 32-byte `address`, int8 `vector` (list).

    The address is computed on first use: a board sends only fields and vector (the gateway derives the
    address itself), so it never pays for the SHA-256 or holds the canonical-form code (qis.fingerprint
    is imported only here). Pass `address` when it is already known."""

    __slots__ = ("fields", "vector", "_address", "_swarm_key")

    def __init__(self, fields, address, vector, swarm_key=None):
        self.fields = fields
        self._address = address
        self.vector = vector
        self._swarm_key = swarm_key

    @property
    def address(self):
        if self._address is None:
            from qis.fingerprint import keyspace_address

            self._address = keyspace_address(self.fields, self._swarm_key)
        return self._address


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_allowed(value, labels):
    # Type-strict: True == 1 in Python, but they canonicalise differently ("true" vs "1").
    for label in labels:
        if label == value and type(label) is type(value):
            return True
    return False


class _Categorical:
    """One categorical field (filled and validated by qis.schemaparse)."""

    __slots__ = ("name", "kind", "input", "labels", "edges")

    def categorise(self, reading):
        if self.input not in reading:
            raise SchemaError(why("noinput", self.input, self.name))
        value = reading[self.input]
        if self.kind == "label":
            if not isinstance(value, (str, int)):
                raise SchemaError(why("labeltype", self.name, value))
            if self.labels is not None and not _label_allowed(value, self.labels):
                raise SchemaError(why("notlabel", self.name, value, self.labels))
            return value
        if not _is_number(value) or value != value:
            raise SchemaError(why("notnum", self.name, self.input, value))
        edges = self.edges
        for i in range(len(edges)):
            if value < edges[i]:
                return self.labels[i]
        return self.labels[-1]


class _Continuous:
    """One continuous field (filled and validated by qis.schemaparse)."""

    __slots__ = ("name", "input", "center", "scale")

    def normalise(self, reading):
        value = reading.get(self.input)
        # x - x is 0 only for a finite x (inf - inf and nan - nan are nan). Not `value in (math.inf,
        # -math.inf)`: the compiler folds that into a float constant that MicroPython's freezer
        # (mpy-tool) writes as C `inf`, so a firmware with the board code frozen in failed to build.
        if not _is_number(value) or value - value != 0:
            raise SchemaError(why("notfinite", self.name, self.input, value))
        z = (value - self.center) / self.scale
        if z > CLIP:
            return CLIP
        if z < -CLIP:
            return -CLIP
        return z


def quantise(values):
    """L2-normalise a list of floats and quantise it to int8 (round half up). A zero vector stays zero."""
    total = 0.0
    for v in values:
        total += v * v
    if total == 0.0:
        return [0] * len(values)
    factor = QUANT_MAX / math.sqrt(total)
    out = []
    for v in values:
        q = int(math.floor(v * factor + 0.5))
        out.append(QUANT_MAX if q > QUANT_MAX else (-QUANT_MAX if q < -QUANT_MAX else q))
    return out


class Schema:
    """A parsed schema. Build with Schema(dict) or load_schema(path); see the module docstring.

    Attributes: schema_id, categorical, continuous, coarser, dimensions.
    """

    def __init__(self, spec):
        # Parsing and its error messages live in qis.schemaparse, imported only while a schema is built,
        # so a board can unload it afterwards (RAM figures in qis.schemaparse).
        from qis.schemaparse import parse

        parse(self, spec, _Categorical, _Continuous)

    def categorise(self, reading):
        """The categorical fields of a raw reading (dict), schema id included."""
        if not isinstance(reading, dict):
            raise SchemaError(why("reading"))
        fields = {SCHEMA_FIELD: self.schema_id}
        for field in self.categorical:
            fields[field.name] = field.categorise(reading)
        return fields

    def vector(self, reading):
        """The quantised int8 vector (list of ints) of a raw reading."""
        return quantise([c.normalise(reading) for c in self.continuous])

    def fingerprint(self, reading, swarm_key=None):
        """Fields and vector of a raw reading; `.address` is derived from the fields when first read."""
        return Fingerprint(self.categorise(reading), None, self.vector(reading), swarm_key)

    def levels(self, fields):
        """Field dicts from exact to coarsest: [fields, coarser level 1, ...], each with the schema id."""
        from qis.schemaparse import levels

        return levels(self, fields)

    def level_addresses(self, fields, swarm_key=None):
        """32-byte addresses of every level, exact first (index = level)."""
        from qis.fingerprint import keyspace_address

        return [keyspace_address(f, swarm_key) for f in self.levels(fields)]

    def check_fields(self, fields):
        """Validate categorical fields received from a board (gateway side): known names, allowed labels."""
        from qis.schemaparse import check_fields

        check_fields(self, fields)


def load_schema(path):
    """Read and parse a schema JSON file; errors name the file."""
    import json

    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError as exc:
        raise SchemaError(why("readfile", path, exc))
    except ValueError as exc:
        raise SchemaError(why("badjson", path, exc))
    return Schema(spec)
