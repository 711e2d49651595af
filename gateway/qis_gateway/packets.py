"""Outcome packets: the only thing the swarm stores. Binary, versioned, signed, at most 512 bytes.

How it works
------------
A packet is a fixed, canonical byte layout built with `struct` (big-endian). Version 2 (what the gateway
signs) carries a per-outcome nonce; version 1 (the same without it) is still read::

    offset  size  field
    0       1     version (2; 1 has no nonce field)
    1       1     flags: bit 0 = a value follows; every other bit must be 0
    2       32    keyspace address the packet is stored under (qis.fingerprint.keyspace_address)
    34      8     created_s, unix seconds (uint64)
    42      8     weight, float64 in (0, 1] (the origin's confidence in the outcome)
    50      16    nonce (version 2 only): makes two outcomes with equal fields two packets
    ..      [8]   value, float64, finite -- only when flag bit 0 is set
    ..      1+S   schema id: length S (1..64) then S bytes of UTF-8 without control characters
    ..      1+L   outcome label: length L (1..64) then L bytes of UTF-8 without control characters
    ..      1+D   vector: dimensions D (0..128) then D signed bytes, each in -127..127
    ..      32    origin gateway's raw Ed25519 public key
    ..      64    Ed25519 signature of SIGN_CONTEXT + every byte above (i.e. every byte before it)

The nonce: the packet id is the hash of the bytes, so without it 20 outcomes with the same label, vector
and fields signed in the same second were one packet (issue 18 point 7). The bridge derives it with a keyed
hash from the gateway's key and the board frame (`outcome_nonce`): unique per outcome, the same if the same
frame is signed again (idempotent), and no device identifier can be read from it.

Why struct and not msgpack: msgpack lets one value be written several ways (an int in 1, 2, 3, 5 or 9
bytes, a str as fixstr or str8), so a signed msgpack blob has many byte forms per content and the packet
id (SHA-256 of the bytes) would not name the content. This layout has exactly one byte form per packet:
the decoder rejects any other (unknown flag bits, -128 components, trailing bytes, NaN), so every byte of
a packet is checked by the parser, by the signature, or both -- which the byte-flip tests prove.

The signature covers every byte before it (unlike the reference code, whose key-whitelisting JSON
canonicaliser left nested fields unsigned), with a domain-separation prefix so a packet signature can
never be replayed as some other kind of signed message. The signer id is SHA-256 of the raw public key
(the reference code took a fixed-prefix slice of the DER encoding, so every signer had the same id).
A packet without a valid signature is never returned by `verify`, and only verified packets carry a
`packet_id`, which the columnar store and synthesis demand (the reference code counted unsigned packets).

`verify` checks, cheapest first: type and size, version, structure, the storage address (when given),
the trust list (when given), then the signature. Every failure raises PacketError with a short `reason`
for metrics. `packet_cache.VerifiedPacketCache` remembers verified packets by id (LRU, repeated fields shared between
entries to keep each ~405 bytes), so a packet read again and again is verified once; `make_validator`
turns it into the swarm's `validator(address, value) -> bool`.

Exceptions::

    ValueError
     └── PacketError(reason)   reasons: type, short, long, version, field, address, untrusted, signature,
                               unverified
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

log = logging.getLogger(__name__)

VERSION = 2  # what `encode` writes when the packet has a nonce; 1 (no nonce) is still read and written
VERSIONS = (1, 2)
NONCE_BYTES = 16
MAX_PACKET_BYTES = 512
ADDRESS_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_TEXT_BYTES = 64
MAX_DIMENSIONS = 128
SIGN_CONTEXT = b"qis-edge/outcome-packet/v1\x00"

FLAG_VALUE = 0x01
_KNOWN_FLAGS = FLAG_VALUE
_HEAD = struct.Struct(">BB32sQd")  # version, flags, address, created_s, weight
_NONCE = struct.Struct(">%ds" % NONCE_BYTES)
_VALUE = struct.Struct(">d")
_MAX_CREATED_S = 2**63 - 1
# version..weight, value absent, 1-byte schema, 1-byte label, no vector, key, signature
MIN_PACKET_BYTES = _HEAD.size + (1 + 1) + (1 + 1) + 1 + KEY_BYTES + SIGNATURE_BYTES

REASONS = ("type", "short", "long", "version", "field", "address", "untrusted", "signature", "unverified")


class PacketError(ValueError):
    """A packet that must be dropped (and counted under `reason`), or our misuse of one."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("%s: %s" % (reason, message))
        self.reason = reason


def signer_id(public_key: bytes) -> bytes:
    """The 32-byte id of a signer: SHA-256 of its raw Ed25519 public key (never a slice of the key)."""
    return hashlib.sha256(bytes(public_key)).digest()


@dataclass(frozen=True, slots=True)
class OutcomePacket:
    """One outcome at one address. `origin_key` and `packet_id` are set by `verify` (and `encode`)."""

    address: bytes
    schema_id: str
    created_s: int
    vector: tuple[int, ...]
    label: str
    value: float | None = None
    weight: float = 1.0
    origin_key: bytes = b""
    verified_id: bytes | None = field(default=None, repr=False, compare=False)
    nonce: bytes = b""  # 16 bytes in a version 2 packet, empty in version 1

    @property
    def version(self) -> int:
        return 2 if self.nonce else 1

    @property
    def packet_id(self) -> bytes:
        """SHA-256 of the packet's bytes; only verified packets have one."""
        if self.verified_id is None:
            raise PacketError("unverified", "this packet was not produced by verify(); it has no packet id")
        return self.verified_id

    @property
    def verified(self) -> bool:
        return self.verified_id is not None

    @property
    def signer_id(self) -> bytes:
        return signer_id(self.origin_key)


# C0 control characters and DEL. One regex search, not a Python loop over the characters: every packet a
# holder is sent is decoded, and the loop was ~1.2 us of its ~6 us decode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(name: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise PacketError("field", "%s must be a str, not %s" % (name, type(text).__name__))
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PacketError("field", "%s is not encodable as UTF-8" % name) from exc
    if not 1 <= len(raw) <= MAX_TEXT_BYTES:
        raise PacketError("field", "%s must be 1..%d UTF-8 bytes, got %d" % (name, MAX_TEXT_BYTES, len(raw)))
    if _CONTROL.search(text) is not None:
        raise PacketError("field", "%s must not contain control characters" % name)
    return raw


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_weight(weight: object) -> float:
    if not _is_real(weight) or not math.isfinite(weight) or not 0.0 < weight <= 1.0:
        raise PacketError("field", "weight must be a finite number in (0, 1], got %r" % (weight,))
    return float(weight)


def _check_value(value: object) -> float | None:
    if value is None:
        return None
    if not _is_real(value) or not math.isfinite(value):
        raise PacketError("field", "value must be a finite number or None, got %r" % (value,))
    return float(value)


def _body(packet: OutcomePacket, public_key: bytes) -> bytes:
    """Every byte of the packet before the signature, after checking each field."""
    if not isinstance(packet, OutcomePacket):
        raise PacketError("type", "expected an OutcomePacket, got %s" % type(packet).__name__)
    if not isinstance(packet.address, bytes) or len(packet.address) != ADDRESS_BYTES:
        raise PacketError("field", "address must be %d bytes" % ADDRESS_BYTES)
    created = packet.created_s
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created <= _MAX_CREATED_S:
        raise PacketError("field", "created_s must be a non-negative int (unix seconds), got %r" % (created,))
    weight = _check_weight(packet.weight)
    value = _check_value(packet.value)
    schema_raw = _check_text("schema_id", packet.schema_id)
    label_raw = _check_text("label", packet.label)
    vector = packet.vector
    if not isinstance(vector, tuple | list) or len(vector) > MAX_DIMENSIONS:
        raise PacketError("field", "vector must be a sequence of at most %d ints" % MAX_DIMENSIONS)
    for c in vector:
        if not isinstance(c, int) or isinstance(c, bool) or not -127 <= c <= 127:
            raise PacketError("field", "vector components must be ints in -127..127, got %r" % (c,))
    nonce = packet.nonce
    if not isinstance(nonce, bytes) or len(nonce) not in (0, NONCE_BYTES):
        raise PacketError("field", "nonce must be %d bytes (or empty: a version 1 packet)" % NONCE_BYTES)
    parts = [_HEAD.pack(packet.version, FLAG_VALUE if value is not None else 0, packet.address, created, weight)]
    if nonce:
        parts.append(nonce)
    if value is not None:
        parts.append(_VALUE.pack(value))
    parts += [bytes((len(schema_raw),)), schema_raw, bytes((len(label_raw),)), label_raw]
    parts += [bytes((len(vector),)), struct.pack(">%db" % len(vector), *vector), public_key]
    return b"".join(parts)


def encode(packet: OutcomePacket, signing_key: nacl.signing.SigningKey) -> bytes:
    """Sign and serialise `packet` (its origin_key is replaced by the signing key's public key)."""
    if not isinstance(signing_key, nacl.signing.SigningKey):
        raise PacketError("type", "signing_key must be a nacl.signing.SigningKey")
    body = _body(packet, bytes(signing_key.verify_key))
    if len(body) + SIGNATURE_BYTES > MAX_PACKET_BYTES:
        raise PacketError("long", "packet would be %d bytes, more than %d" % (len(body) + 64, MAX_PACKET_BYTES))
    data = body + signing_key.sign(SIGN_CONTEXT + body).signature
    _signed_here(hashlib.sha256(data).digest())
    return data


# Ids (SHA-256) of the packets this process signed, newest last: their signature cannot fail, so
# `VerifiedPacketCache` skips the Ed25519 check for them (the gateway's own swarm node checks every packet
# it puts: one verify per packet, ~60 us, a quarter of the storing gateway's CPU per outcome). Only bytes
# signed here match an id; the decode, address and trust-list checks still run.
SIGNED_HERE_MAX = 16384
_SIGNED: OrderedDict[bytes, None] = OrderedDict()
_SIGNED_LOCK = threading.Lock()


def _signed_here(packet_id: bytes) -> None:
    with _SIGNED_LOCK:
        _SIGNED[packet_id] = None
        if len(_SIGNED) > SIGNED_HERE_MAX:
            _SIGNED.popitem(last=False)


def _was_signed_here(packet_id: bytes) -> bool:
    with _SIGNED_LOCK:
        return _SIGNED.pop(packet_id, 0) is None  # once: the verified cache keeps it from then on


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data) - KEY_BYTES - SIGNATURE_BYTES:
            raise PacketError("short", "packet ends inside %s" % what)
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def text(self, what: str) -> str:
        raw = self.take(self.take(1, what)[0], what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError("field", "%s is not valid UTF-8" % what) from exc
        _check_text(what, text)
        return text


def decode_unverified(data: bytes) -> OutcomePacket:
    """Parse and check the structure only. The result carries no packet id: use `verify` for trust."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PacketError("type", "a packet must be bytes, not %s" % type(data).__name__)
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) > MAX_PACKET_BYTES:
        raise PacketError("long", "packet is %d bytes, the limit is %d" % (len(data), MAX_PACKET_BYTES))
    if len(data) < MIN_PACKET_BYTES:
        raise PacketError("short", "packet is %d bytes, a packet has at least %d" % (len(data), MIN_PACKET_BYTES))
    version, flags, address, created, weight = _HEAD.unpack_from(data, 0)
    if version not in VERSIONS:
        raise PacketError("version", "unknown packet version %d (this gateway reads 1 and 2)" % version)
    if flags & ~_KNOWN_FLAGS:
        raise PacketError("field", "unknown flag bits 0x%02x" % flags)
    if created > _MAX_CREATED_S:
        raise PacketError("field", "created_s out of range")
    _check_weight(weight)
    reader = _Reader(data, _HEAD.size)
    nonce = reader.take(NONCE_BYTES, "nonce") if version == 2 else b""
    value = None
    if flags & FLAG_VALUE:
        value = _check_value(_VALUE.unpack(reader.take(_VALUE.size, "value"))[0])
    schema_id = reader.text("schema_id")
    label = reader.text("label")
    dims = reader.take(1, "vector")[0]
    if dims > MAX_DIMENSIONS:
        raise PacketError("field", "vector has %d dimensions, at most %d allowed" % (dims, MAX_DIMENSIONS))
    vector = struct.unpack(">%db" % dims, reader.take(dims, "vector"))
    if -128 in vector:
        raise PacketError("field", "vector component -128 is not allowed (range -127..127)")
    if reader.pos + KEY_BYTES + SIGNATURE_BYTES != len(data):
        raise PacketError("long", "%d trailing bytes after the vector" % (len(data) - reader.pos - 96))
    key = data[reader.pos : reader.pos + KEY_BYTES]
    return OutcomePacket(address, schema_id, created, vector, label, value, weight, key, nonce=nonce)


def verify(
    data: bytes,
    trusted_keys: Collection[bytes] | None = None,
    address: bytes | None = None,
) -> OutcomePacket:
    """Decode and authenticate `data`; raise PacketError unless every check passes (see module doc).

    trusted_keys: raw 32-byte public keys allowed to sign (None = any validly signed packet).
    address: the address the packet was stored under or fetched from; it must equal the packet's own.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    return _verify(data, trusted_keys, address, None)


def _verify(
    data: bytes, trusted_keys: Collection[bytes] | None, address: bytes | None, packet_id: bytes | None
) -> OutcomePacket:
    packet = decode_unverified(data)
    check_claims(packet, trusted_keys, address)
    body_end = len(data) - SIGNATURE_BYTES
    try:
        nacl.signing.VerifyKey(packet.origin_key).verify(SIGN_CONTEXT + data[:body_end], data[body_end:])
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise PacketError("signature", "Ed25519 signature does not verify for the origin key") from exc
    return _with_id(packet, packet_id or hashlib.sha256(data).digest())


def _with_id(packet: OutcomePacket, packet_id: bytes) -> OutcomePacket:
    return OutcomePacket(
        packet.address, packet.schema_id, packet.created_s, packet.vector, packet.label,
        packet.value, packet.weight, packet.origin_key, packet_id, packet.nonce,
    )  # fmt: skip


def check_claims(packet: OutcomePacket, trusted_keys: Collection[bytes] | None, address: bytes | None) -> None:
    """The cheap checks that do not need the signature: storage address and trust list."""
    if address is not None and packet.address != address:
        raise PacketError("address", "packet is for address %s, stored under %s" % (packet.address.hex()[:16],
                                                                                   bytes(address).hex()[:16]))
    if trusted_keys is not None and packet.origin_key not in trusted_keys:
        raise PacketError("untrusted", "origin key %s is not in the trust list" % packet.origin_key.hex()[:16])


def value_signer(data: bytes) -> bytes | None:
    """The origin key of a stored packet, read from its fixed place (the 32 bytes before the signature),
    for the swarm holder's per-signer storage quota. No check: the swarm's validator verified the packet
    before it is stored; None for anything too short to be a packet."""
    if not isinstance(data, bytes) or len(data) < MIN_PACKET_BYTES:
        return None
    return data[-SIGNATURE_BYTES - KEY_BYTES : -SIGNATURE_BYTES]


NONCE_CONTEXT = b"qis-edge/outcome-nonce/v1\x00"


def outcome_nonce(signing_key: nacl.signing.SigningKey, device: str, seq: int, frame_digest: bytes) -> bytes:
    """The nonce of the packets for one board outcome frame: HMAC-SHA256 under a key derived from the
    gateway's seed, over the device id, seq and the frame's SHA-256, cut to 16 bytes. Distinct frames give
    distinct nonces; the same frame gives the same nonce (signing again yields the same bytes); only the
    key's holder can link a nonce to a device."""
    mac_key = hashlib.sha256(NONCE_CONTEXT + bytes(signing_key)).digest()
    msg = device.encode("utf-8") + b"\x00" + struct.pack(">Q", seq) + bytes(frame_digest)
    return hmac.new(mac_key, msg, hashlib.sha256).digest()[:NONCE_BYTES]
