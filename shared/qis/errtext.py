"""The shared core's error texts, imported only when something is refused (qis.errors.why).

A board refuses nothing on its normal path, so it does not hold these texts: as string constants of
the resident modules they cost ~2.5 KB of heap on the 64-bit unix port (.mpy; docs/device.md). A
board that catches a QisError can drop this module again (qis_device does). Keys are short names
used at the raise sites; each text is formatted with the arguments given there.
"""

TEXTS = {
    # qis.messages (FrameError)
    "framesize": "frame of %d bytes exceeds %d",
    "seqgot": "seq must be an integer in 0..2**53-1, got %r",
    "seq": "seq must be an integer in 0..2**53-1",
    "paytype": "payload must be bytes",
    "paysize": "payload of %d bytes exceeds %d",
    "payshort": "payload of %d bytes is too short for a frame",
    "tag": "HMAC tag does not match (wrong secret or tampered frame)",
    "json": "body is not valid JSON",
    "object": "body must be a JSON object",
    "version": "unsupported frame version %r",
    "kind": "unknown frame kind %r",
    "wrongkind": "frame kind %r arrived where %r was expected",
    "dev": "dev must be a string",
    "device": "frame names device %r but came from %r",
    "out.re": "outcome.re must be the non-negative seq of a reading",
    "out.label": "outcome.label must be a string of 1-64 characters",
    "out.value": "outcome.value must be a number",
    "out.weight": "outcome.weight must be a number in (0, 1]",
    "sum.enough": "summary.enough must be a boolean",
    "sum.int": "summary.%s must be a non-negative integer",
    "sum.top": "summary.top must be a list",
    "sum.entry": "summary.top entries must be [label, share_permille]",
    "sum.mean": "summary.mean must be a number or null",
    "err.text": "error.code and error.msg must be strings",
    # qis.topics (TopicError)
    "idlen": "%s must be a string of 1-%d characters, got %r",
    "idchar": "%s %r has %r; use only letters, digits and _ . -",
    "topickind": "unknown topic kind %r; expected one of %s",
    # qis.fingerprint (CanonicalError)
    "valtype": "field %r has a %s value; categorical values must be str, int or bool "
               "(bin floats into labels on the board first)",
    "notdict": "categorical fields must be a dict, not %s",
    "keytype": "field name %r is a %s; field names must be str",
    "swarmkey": "swarm_key is empty; pass None for plain SHA-256 addresses",
    # qis.schema (SchemaError)
    "noinput": "reading has no %r (needed for field %r)",
    "labeltype": "field %r: label %r must be a string, integer or boolean",
    "notlabel": "field %r: %r is not one of %r",
    "notnum": "field %r: reading %r = %r is not a number",
    "notfinite": "field %r: reading %r = %r is not a finite number",
    "reading": "a reading must be a dict of input name -> value",
    "readfile": "cannot read schema file %s: %s",
    "badjson": "schema file %s is not valid JSON: %s",
}
