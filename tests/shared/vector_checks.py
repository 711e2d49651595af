"""Checks of shared/qis against vectors.json, written in the dialect both runtimes share.

The same function runs under CPython (test_vectors.py imports it) and under the MicroPython unix port
(test_vectors.py runs it there through run_micropython), so both interpreters are held to one set of
golden bytes. run(path, schema_dir) returns a list of failure strings; empty means every vector passed.
"""

import json

from qis import fingerprint, hmac256, messages, topics
from qis.errors import CanonicalError, FrameError, TopicError
from qis.schema import load_schema


def _hex(data):
    return "".join("%02x" % b for b in data)


def _unhex(text):
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def _check_canonical(vectors, failures):
    for case in vectors["canonical"]:
        fields = case["fields"]
        got = fingerprint.canonical(fields).decode()
        if got != case["canonical"]:
            failures.append("canonical %r: got %r want %r" % (fields, got, case["canonical"]))
        if _hex(fingerprint.keyspace_address(fields)) != case["sha256"]:
            failures.append("sha256 address of %r differs" % (fields,))
        keyed = fingerprint.keyspace_address(fields, swarm_key=case["hmac_key"].encode())
        if _hex(keyed) != case["hmac"]:
            failures.append("hmac address of %r differs" % (fields,))
    for case in vectors["canonical_errors"]:
        try:
            fingerprint.canonical(case["fields"])
            failures.append("canonical accepted %r" % (case["fields"],))
        except CanonicalError as exc:
            if case["names"] not in str(exc):
                failures.append("error for %r does not name the field: %s" % (case["fields"], exc))
    try:
        fingerprint.canonical({1: "x"})
        failures.append("canonical accepted a non-string key")
    except CanonicalError:
        pass


def _check_hmac(vectors, failures):
    for case in vectors["hmac"]:
        tag = hmac256.hmac_sha256(_unhex(case["key"]), _unhex(case["msg"]))
        if _hex(tag) != case["tag"]:
            failures.append("hmac with a %d-byte key differs" % (len(case["key"]) // 2))


def _check_fingerprints(vectors, schema_dir, failures):
    schemas = {}
    for case in vectors["fingerprints"]:
        name = case["schema"]
        if name not in schemas:
            schemas[name] = load_schema(schema_dir + "/" + name)
        schema = schemas[name]
        fp = schema.fingerprint(case["reading"])
        if fp.fields != case["fields"]:
            failures.append("%s fields: got %r want %r" % (name, fp.fields, case["fields"]))
        if _hex(fp.address) != case["address"]:
            failures.append("%s address differs for %r" % (name, case["reading"]))
        if list(fp.vector) != case["vector"]:
            failures.append("%s vector: got %r want %r" % (name, fp.vector, case["vector"]))
        levels = [_hex(a) for a in schema.level_addresses(fp.fields)]
        if levels != case["level_addresses"]:
            failures.append("%s level addresses differ for %r" % (name, case["reading"]))


def _check_frames(vectors, failures):
    for case in vectors["frames"]:
        secret = _unhex(case["secret"])
        payload = _unhex(case["payload"])
        try:
            body = messages.decode(payload, secret, kind=case.get("kind"), device=case.get("device"))
        except FrameError as exc:
            if "ok" in case:
                failures.append("frame %s refused: %s" % (case["name"], exc))
            elif exc.reason != case["reason"]:
                failures.append("frame %s: reason %r, want %r" % (case["name"], exc.reason, case["reason"]))
            continue
        if "ok" not in case:
            failures.append("frame %s accepted; want reason %r" % (case["name"], case["reason"]))
        elif body != case["ok"]:
            failures.append("frame %s decoded to %r" % (case["name"], body))


def _check_topics(vectors, failures):
    for name, site, device, kind in vectors["topics"]["valid"]:
        if topics.parse_topic(name) != (site, device, kind):
            failures.append("topic %r parsed wrong" % name)
        if topics.topic(site, device, kind) != name:
            failures.append("topic(%r, %r, %r) != %r" % (site, device, kind, name))
    for name in vectors["topics"]["invalid"]:
        try:
            topics.parse_topic(name)
            failures.append("topic %r accepted" % name)
        except TopicError:
            pass


def run(path, schema_dir):
    with open(path) as f:
        vectors = json.load(f)
    failures = []
    _check_canonical(vectors, failures)
    _check_hmac(vectors, failures)
    _check_fingerprints(vectors, schema_dir, failures)
    _check_frames(vectors, failures)
    _check_topics(vectors, failures)
    return failures
