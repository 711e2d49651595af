"""Canonical form of categorical fields and the keyspace address derived from it.

canonical(fields) is exactly CPython's
    json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
built by hand, because MicroPython's json has neither sort_keys nor ASCII escaping (docs/protocol.md).
Only str, int and bool values are allowed: floats differ between boards (32-bit) and hosts (64-bit),
so they are binned or quantised on the board first and never hashed.

keyspace_address(fields) = SHA-256(canonical) -- the plain address of the QIS article. Note that, unlike
the article says, similar inputs do NOT give nearby addresses: SHA-256 scatters them uniformly. Similarity
is the exact categorical match plus cosine similarity of vectors inside the bucket (see docs/).

keyspace_address(fields, swarm_key) = HMAC-SHA256(swarm_key, canonical): the categorical space is small
enough to enumerate, so a plain address can be reversed to its fields by anyone; a permissioned swarm that
shares a secret key makes addresses unlinkable for outsiders (at the price that only members can compute them).
"""

import hashlib

from qis.errors import CanonicalError, why
from qis.hmac256 import hmac_sha256

# JSON's two-character escapes (RFC 8259 section 7), as CPython's encoder emits them: the character
# at index i of _ESCAPED is written as a backslash and _ESCAPE_AS[i]. Two strings, not a dict: on a
# board every constant string of a resident module is held in RAM.
_ESCAPED = '"\\\n\r\t\b\f'
_ESCAPE_AS = '"\\nrtbf'


def _plain(text):
    """True when `text` is printable ASCII without quote or backslash (every board label): written as is.
    Checked over bytes: iterating a str interns each character as a qstr on MicroPython."""
    try:
        data = text.encode()
    except UnicodeError:  # CPython: a lone surrogate
        return False
    for b in data:
        if b < 0x20 or b > 0x7E or b == 0x22 or b == 0x5C:
            return False
    return True


def _escape_string(text):
    if _plain(text):
        return '"' + text + '"'
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F and ch != '"' and ch != "\\":
            out.append(ch)
            continue
        i = _ESCAPED.find(ch)
        if i >= 0:
            out.append("\\" + _ESCAPE_AS[i])
        elif code > 0xFFFF:
            # Outside the BMP: a UTF-16 surrogate pair, as ensure_ascii does.
            code -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF)))
        else:
            out.append("\\u%04x" % code)
    out.append('"')
    return "".join(out)


def _encode_value(name, value):
    # bool before int: True is an int on both runtimes.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _escape_string(value)
    raise CanonicalError(why("valtype", name, type(value).__name__))


def canonical(fields):
    """Return the canonical UTF-8 bytes of a flat dict of str -> (str | int | bool)."""
    if not isinstance(fields, dict):
        raise CanonicalError(why("notdict", type(fields).__name__))
    for key in fields:
        if not isinstance(key, str):
            raise CanonicalError(why("keytype", key, type(key).__name__))
    parts = []
    for key in sorted(fields):
        parts.append(_escape_string(key) + ":" + _encode_value(key, fields[key]))
    # Every character is ASCII after escaping, so encoding cannot fail.
    return ("{" + ",".join(parts) + "}").encode()


def keyspace_address(fields, swarm_key=None):
    """The 32-byte Kademlia key of a fingerprint's categorical fields (see module docstring)."""
    data = canonical(fields)
    if swarm_key is None:
        return hashlib.sha256(data).digest()
    if not swarm_key:
        raise CanonicalError(why("swarmkey"))
    return hmac_sha256(swarm_key, data)
