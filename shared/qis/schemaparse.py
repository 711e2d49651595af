"""Schema parsing and the gateway-side field checks, kept apart from qis.schema for board RAM.

qis.schema imports this module only inside Schema() construction and the gateway-only methods
(levels, check_fields), so a board that has loaded its schema can drop it from sys.modules: its
validation messages are needed once. Measured as .mpy on the 64-bit unix port: qis.schema resident
9.3 KB before the split; see docs/device.md for the figures after it.
"""

from qis.errors import SchemaError

SCHEMA_FIELD = "schema"


def _require(spec, key, where):
    if key not in spec:
        raise SchemaError("%s: missing %r" % (where, key))
    return spec[key]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_name(name, where):
    if not isinstance(name, str) or not name:
        raise SchemaError("%s: name must be a non-empty string" % where)


def _categorical(field, spec, index):
    where = "categorical[%d]" % index
    if not isinstance(spec, dict):
        raise SchemaError("%s must be an object" % where)
    field.name = _require(spec, "name", where)
    _check_name(field.name, where)
    if field.name == SCHEMA_FIELD:
        raise SchemaError("%s: the name %r is reserved for the schema id" % (where, SCHEMA_FIELD))
    where = "categorical field %r" % field.name
    field.kind = _require(spec, "kind", where)
    field.input = spec.get("input", field.name)
    field.labels = spec.get("labels")
    field.edges = None
    if field.labels is not None:
        if not isinstance(field.labels, list) or not field.labels:
            raise SchemaError("%s: labels must be a non-empty list" % where)
        for label in field.labels:
            if not isinstance(label, (str, int)):
                raise SchemaError("%s: label %r must be a string or integer" % (where, label))
    if field.kind == "bands":
        edges = _require(spec, "edges", where)
        if not isinstance(edges, list) or not edges:
            raise SchemaError("%s: edges must be a non-empty list of numbers" % where)
        for i in range(len(edges)):
            if not _is_number(edges[i]):
                raise SchemaError("%s: edge %r is not a number" % (where, edges[i]))
            if i and edges[i] <= edges[i - 1]:
                raise SchemaError("%s: edges must be strictly ascending" % where)
        if field.labels is None or len(field.labels) != len(edges) + 1:
            raise SchemaError("%s: bands need exactly len(edges) + 1 = %d labels" % (where, len(edges) + 1))
        field.edges = edges
    elif field.kind != "label":
        raise SchemaError("%s: kind must be 'label' or 'bands', not %r" % (where, field.kind))
    return field


def _continuous(field, spec, index):
    where = "continuous[%d]" % index
    if not isinstance(spec, dict):
        raise SchemaError("%s must be an object" % where)
    field.name = _require(spec, "name", where)
    _check_name(field.name, where)
    where = "continuous field %r" % field.name
    field.input = spec.get("input", field.name)
    field.center = spec.get("center", 0)
    field.scale = spec.get("scale", 1)
    if not _is_number(field.center) or not _is_number(field.scale) or field.scale <= 0:
        raise SchemaError("%s: center must be a number and scale a positive number" % where)
    return field


def parse(schema, spec, categorical_cls, continuous_cls):
    """Fill a Schema from its JSON dict (see qis.schema for the format); SchemaError names the problem."""
    if not isinstance(spec, dict):
        raise SchemaError("a schema must be a JSON object")
    schema.schema_id = _require(spec, "schema_id", "schema")
    if not isinstance(schema.schema_id, str) or not schema.schema_id:
        raise SchemaError("schema: schema_id must be a non-empty string")
    cats = spec.get("categorical", [])
    conts = spec.get("continuous", [])
    if not isinstance(cats, list) or not isinstance(conts, list):
        raise SchemaError("schema %r: categorical and continuous must be lists" % schema.schema_id)
    schema.categorical = [_categorical(categorical_cls(), cats[i], i) for i in range(len(cats))]
    schema.continuous = [_continuous(continuous_cls(), conts[i], i) for i in range(len(conts))]
    names = [c.name for c in schema.categorical]
    for name in names:
        if names.count(name) > 1:
            raise SchemaError("schema %r: categorical field %r appears twice" % (schema.schema_id, name))
    coarser = spec.get("coarser", [])
    if not isinstance(coarser, list):
        raise SchemaError("schema %r: coarser must be a list of field-name lists" % schema.schema_id)
    for level in coarser:
        if not isinstance(level, list):
            raise SchemaError("schema %r: each coarser level must be a list of field names" % schema.schema_id)
        for name in level:
            if name not in names:
                raise SchemaError("schema %r: coarser level names unknown field %r" % (schema.schema_id, name))
    schema.coarser = coarser
    schema.dimensions = len(schema.continuous)


def levels(schema, fields):
    """Schema.levels: field dicts from exact to coarsest, each with the schema id."""
    if fields.get(SCHEMA_FIELD) != schema.schema_id:
        raise SchemaError("fields belong to schema %r, not %r" % (fields.get(SCHEMA_FIELD), schema.schema_id))
    out = [fields]
    for level in schema.coarser:
        sub = {SCHEMA_FIELD: schema.schema_id}
        for name in level:
            if name not in fields:
                raise SchemaError("fields lack %r, needed by a coarser level" % name)
            sub[name] = fields[name]
        out.append(sub)
    return out


def _label_allowed(value, labels):
    for label in labels:
        if label == value and type(label) is type(value):
            return True
    return False


def check_fields(schema, fields):
    """Schema.check_fields: categorical fields received from a board have known names and allowed labels."""
    if not isinstance(fields, dict):
        raise SchemaError("fields must be an object")
    if fields.get(SCHEMA_FIELD) != schema.schema_id:
        raise SchemaError("fields name schema %r, expected %r" % (fields.get(SCHEMA_FIELD), schema.schema_id))
    if len(fields) != len(schema.categorical) + 1:
        raise SchemaError("fields must be exactly the schema's %d categorical fields" % len(schema.categorical))
    for field in schema.categorical:
        if field.name not in fields:
            raise SchemaError("fields lack %r" % field.name)
        value = fields[field.name]
        if field.labels is not None and not _label_allowed(value, field.labels):
            raise SchemaError("field %r: %r is not one of %r" % (field.name, value, field.labels))
        if field.labels is None and not isinstance(value, (str, int)):
            raise SchemaError("field %r: %r must be a string or integer" % (field.name, value))
