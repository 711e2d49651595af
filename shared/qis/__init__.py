"""qis: the common language of qis-edge boards and gateways.

Runs unchanged on MicroPython and CPython (design rule 6, docs/design.md): no f-strings, no typing,
dataclasses or enum at run time, nothing executed at import beyond definitions.

Modules:
    fingerprint  canonical form of categorical fields, keyspace address (SHA-256 or HMAC)
    hmac256      HMAC-SHA256 for runtimes without `hmac`
    schema       schema files: binning rules, continuous normalisation, Schema.fingerprint()
    messages     device <-> gateway frames (fp, outcome, summary, error) with HMAC tags
    topics       MQTT topic builders and parsers (qis/v1/<site>/<device>/<kind>)

Exception tree (errors.py); every one is a ValueError, so callers that only know ValueError still work:

    QisError(ValueError)
    +-- CanonicalError   a field value cannot be canonically encoded (float, None, nesting, bad key)
    +-- SchemaError      a schema file or a reading does not fit the schema
    +-- FrameError       a frame is malformed, oversize, wrongly typed or carries a bad tag
    +-- TopicError       a topic or an id does not follow qis/v1/<site>/<device>/<kind>
"""

__version__ = "0.1.0"
