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

from qis.errors import SchemaError
from qis.fingerprint import keyspace_address

SCHEMA_FIELD = "schema"
CLIP = 4.0
QUANT_MAX = 127


class Fingerprint:
    """One reading's fingerprint: categorical `fields`, their 32-byte `address`, int8 `vector` (list)."""

    __slots__ = ("fields", "address", "vector")

    def __init__(self, fields, address, vector):
        self.fields = fields
        self.address = address
        self.vector = vector


def _require(spec, key, where):
    if key not in spec:
        raise SchemaError("%s: missing %r" % (where, key))
    return spec[key]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_allowed(value, labels):
    # Type-strict: True == 1 in Python, but they canonicalise differently ("true" vs "1").
    for label in labels:
        if label == value and type(label) is type(value):
            return True
    return False


def _check_name(name, where):
    if not isinstance(name, str) or not name:
        raise SchemaError("%s: name must be a non-empty string" % where)


class _Categorical:
    __slots__ = ("name", "kind", "input", "labels", "edges")

    def __init__(self, spec, index):
        where = "categorical[%d]" % index
        if not isinstance(spec, dict):
            raise SchemaError("%s must be an object" % where)
        self.name = _require(spec, "name", where)
        _check_name(self.name, where)
        if self.name == SCHEMA_FIELD:
            raise SchemaError("%s: the name %r is reserved for the schema id" % (where, SCHEMA_FIELD))
        where = "categorical field %r" % self.name
        self.kind = _require(spec, "kind", where)
        self.input = spec.get("input", self.name)
        self.labels = spec.get("labels")
        self.edges = None
        if self.labels is not None:
            if not isinstance(self.labels, list) or not self.labels:
                raise SchemaError("%s: labels must be a non-empty list" % where)
            for label in self.labels:
                if not isinstance(label, (str, int)):
                    raise SchemaError("%s: label %r must be a string or integer" % (where, label))
        if self.kind == "bands":
            edges = _require(spec, "edges", where)
            if not isinstance(edges, list) or not edges:
                raise SchemaError("%s: edges must be a non-empty list of numbers" % where)
            for i in range(len(edges)):
                if not _is_number(edges[i]):
                    raise SchemaError("%s: edge %r is not a number" % (where, edges[i]))
                if i and edges[i] <= edges[i - 1]:
                    raise SchemaError("%s: edges must be strictly ascending" % where)
            if self.labels is None or len(self.labels) != len(edges) + 1:
                raise SchemaError("%s: bands need exactly len(edges) + 1 = %d labels" % (where, len(edges) + 1))
            self.edges = edges
        elif self.kind != "label":
            raise SchemaError("%s: kind must be 'label' or 'bands', not %r" % (where, self.kind))

    def categorise(self, reading):
        if self.input not in reading:
            raise SchemaError("reading has no %r (needed for field %r)" % (self.input, self.name))
        value = reading[self.input]
        if self.kind == "label":
            if not isinstance(value, (str, int)):
                raise SchemaError("field %r: label %r must be a string, integer or boolean" % (self.name, value))
            if self.labels is not None and not _label_allowed(value, self.labels):
                raise SchemaError("field %r: %r is not one of %r" % (self.name, value, self.labels))
            return value
        if not _is_number(value) or value != value:
            raise SchemaError("field %r: reading %r = %r is not a number" % (self.name, self.input, value))
        edges = self.edges
        for i in range(len(edges)):
            if value < edges[i]:
                return self.labels[i]
        return self.labels[-1]


class _Continuous:
    __slots__ = ("name", "input", "center", "scale")

    def __init__(self, spec, index):
        where = "continuous[%d]" % index
        if not isinstance(spec, dict):
            raise SchemaError("%s must be an object" % where)
        self.name = _require(spec, "name", where)
        _check_name(self.name, where)
        where = "continuous field %r" % self.name
        self.input = spec.get("input", self.name)
        self.center = spec.get("center", 0)
        self.scale = spec.get("scale", 1)
        if not _is_number(self.center) or not _is_number(self.scale) or self.scale <= 0:
            raise SchemaError("%s: center must be a number and scale a positive number" % where)

    def normalise(self, reading):
        value = reading.get(self.input)
        if not _is_number(value) or value != value or value in (math.inf, -math.inf):
            raise SchemaError("field %r: reading %r = %r is not a finite number" % (self.name, self.input, value))
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
    """A parsed schema. Build with Schema(dict) or load_schema(path); see the module docstring."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise SchemaError("a schema must be a JSON object")
        self.schema_id = _require(spec, "schema_id", "schema")
        if not isinstance(self.schema_id, str) or not self.schema_id:
            raise SchemaError("schema: schema_id must be a non-empty string")
        cats = spec.get("categorical", [])
        conts = spec.get("continuous", [])
        if not isinstance(cats, list) or not isinstance(conts, list):
            raise SchemaError("schema %r: categorical and continuous must be lists" % self.schema_id)
        self.categorical = [_Categorical(cats[i], i) for i in range(len(cats))]
        self.continuous = [_Continuous(conts[i], i) for i in range(len(conts))]
        names = [c.name for c in self.categorical]
        for name in names:
            if names.count(name) > 1:
                raise SchemaError("schema %r: categorical field %r appears twice" % (self.schema_id, name))
        coarser = spec.get("coarser", [])
        if not isinstance(coarser, list):
            raise SchemaError("schema %r: coarser must be a list of field-name lists" % self.schema_id)
        for level in coarser:
            if not isinstance(level, list):
                raise SchemaError("schema %r: each coarser level must be a list of field names" % self.schema_id)
            for name in level:
                if name not in names:
                    raise SchemaError("schema %r: coarser level names unknown field %r" % (self.schema_id, name))
        self.coarser = coarser
        self.dimensions = len(self.continuous)

    def categorise(self, reading):
        """The categorical fields of a raw reading (dict), schema id included."""
        if not isinstance(reading, dict):
            raise SchemaError("a reading must be a dict of input name -> value")
        fields = {SCHEMA_FIELD: self.schema_id}
        for field in self.categorical:
            fields[field.name] = field.categorise(reading)
        return fields

    def vector(self, reading):
        """The quantised int8 vector (list of ints) of a raw reading."""
        return quantise([c.normalise(reading) for c in self.continuous])

    def fingerprint(self, reading, swarm_key=None):
        fields = self.categorise(reading)
        return Fingerprint(fields, keyspace_address(fields, swarm_key), self.vector(reading))

    def levels(self, fields):
        """Field dicts from exact to coarsest: [fields, coarser level 1, ...], each with the schema id."""
        if fields.get(SCHEMA_FIELD) != self.schema_id:
            raise SchemaError("fields belong to schema %r, not %r" % (fields.get(SCHEMA_FIELD), self.schema_id))
        out = [fields]
        for level in self.coarser:
            sub = {SCHEMA_FIELD: self.schema_id}
            for name in level:
                if name not in fields:
                    raise SchemaError("fields lack %r, needed by a coarser level" % name)
                sub[name] = fields[name]
            out.append(sub)
        return out

    def level_addresses(self, fields, swarm_key=None):
        """32-byte addresses of every level, exact first (index = level)."""
        return [keyspace_address(f, swarm_key) for f in self.levels(fields)]

    def check_fields(self, fields):
        """Validate categorical fields received from a board (gateway side): known names, allowed labels."""
        if not isinstance(fields, dict):
            raise SchemaError("fields must be an object")
        if fields.get(SCHEMA_FIELD) != self.schema_id:
            raise SchemaError("fields name schema %r, expected %r" % (fields.get(SCHEMA_FIELD), self.schema_id))
        if len(fields) != len(self.categorical) + 1:
            raise SchemaError("fields must be exactly the schema's %d categorical fields" % len(self.categorical))
        for field in self.categorical:
            if field.name not in fields:
                raise SchemaError("fields lack %r" % field.name)
            value = fields[field.name]
            if field.labels is not None and not _label_allowed(value, field.labels):
                raise SchemaError("field %r: %r is not one of %r" % (field.name, value, field.labels))
            if field.labels is None and not isinstance(value, (str, int)):
                raise SchemaError("field %r: %r must be a string or integer" % (field.name, value))


def load_schema(path):
    """Read and parse a schema JSON file; errors name the file."""
    import json

    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError as exc:
        raise SchemaError("cannot read schema file %s: %s" % (path, exc))
    except ValueError as exc:
        raise SchemaError("schema file %s is not valid JSON: %s" % (path, exc))
    return Schema(spec)
