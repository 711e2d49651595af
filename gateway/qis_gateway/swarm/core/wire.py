"""Datagram codec of the swarm: msgpack arrays, one message per UDP datagram (<= 1,400 bytes).

How it works:
- Every datagram is a msgpack array ``[kind, tid, sender_id, ...]``: ``kind`` a small int (below),
  ``tid`` a 32-bit transaction id chosen by the requester and echoed by the reply, ``sender_id`` the
  sender's 32-byte node id.
- Requests carry ``nonce`` (16 fresh bytes, or nil when the requester already holds a proven binding
  of the recipient's address to its id). A reply to a request with a nonce carries ``proof = [public_key,
  signature over PROOF_DOMAIN + nonce]``; the requester checks SHA-256(public_key) == sender_id and the
  signature before the sender may enter its routing table (S/Kademlia-style id proof, checked once per
  peer, then the (address, id) binding is trusted).
- The other direction costs one datagram: a reply to a requester we cannot place yet carries a
  ``challenge`` (16 fresh bytes); the requester answers with a one-way PROOF signing it, which proves its
  key and that it receives at its source address. Three datagrams instead of a PING/PONG round trip.
- Layouts (``?`` = may be nil)::

    PING        [1, tid, id, nonce?]
    FIND_NODE   [2, tid, id, nonce?, target]
    FIND_VALUE  [3, tid, id, nonce?, address, offset]
    STORE       [4, tid, id, nonce?, address, token, [value, ...]]
    LEAVE       [5, tid, id, public_key, signature]            (one-way, no reply; see below)
    PROOF       [6, tid, id, proof]                            (one-way answer to a challenge)
    PONG        [16, tid, id, proof?, challenge?]
    NODES       [17, tid, id, proof?, challenge?, token, [[id, ip, port], ...]]
    VALUES      [18, tid, id, proof?, challenge?, token, offset, total, digest, [value, ...], [[id, ip, port], ...]]
    STORED      [19, tid, id, proof?, challenge?, stored_count]
    BUSY        [20, tid, id]      (a proven peer's request refused by the rate limiter: back-pressure)

  ``token`` (BEP 5) lets the requester STORE at this node from the same source address later.
  FIND_VALUE answers are paged: a holder returns as many values from ``offset`` as fit in one datagram
  plus ``total`` (how many it holds) and ``digest`` (``set_digest`` of everything it holds; sent with
  offset 0); the requester asks again with a larger offset only while the holder's digest differs from
  the digest of the values it already collected, so identical replicas are never paged twice.
- LEAVE is signed: ``signature`` is the leaving node's key over ``leave_message(recipient_id, tid)``
  (``LEAVE_DOMAIN`` + the recipient's id + the 4-byte tid), so a LEAVE from a forged source address
  cannot remove anyone, and one sent to another node cannot be replayed here. The first version's
  unsigned ``[5, tid, id]`` still decodes (``proof`` nil): the recipient then only checks that contact
  with a PING and evicts it if it stays silent (rpc.py).
- ``decode`` checks every type and length and raises ``WireError`` for anything else (never another
  exception). Node handlers work on the decoded message objects; the simulator passes those objects
  directly and skips the byte codec (it is tested here instead).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from dataclasses import dataclass

import msgpack

from ..errors import WireError
from .routing import Contact

PING, FIND_NODE, FIND_VALUE, STORE, LEAVE, PROOF = 1, 2, 3, 4, 5, 6
PONG, NODES, VALUES, STORED, BUSY = 16, 17, 18, 19, 20
PROOF_DOMAIN = b"qis-swarm/1 node-id proof:"
LEAVE_DOMAIN = b"qis-swarm/1 leave:"
NONCE_BYTES = 16
ID_BYTES = 32
MAX_TOKEN_BYTES = 32
MAX_CONTACTS = 32
MAX_DATAGRAM = 1400
# Bytes a reply needs besides its contacts and values (kind, tid, id, proof, token, ints, array headers).
REPLY_OVERHEAD = 1 + 1 + 5 + 34 + 1 + 34 + 66 + 18 + 34 + 5 + 5 + 10 + 3 + 3 + 8


def proof_message(nonce: bytes) -> bytes:
    """The bytes a node signs to prove its id to a requester that sent ``nonce``."""
    return PROOF_DOMAIN + nonce


def leave_message(recipient_id: bytes, tid: int) -> bytes:
    """The bytes a leaving node signs in its LEAVE to ``recipient_id``."""
    return LEAVE_DOMAIN + recipient_id + tid.to_bytes(4, "big")


CONTACT_FIXED_BYTES = 1 + 34 + 2 + 3  # array header, bin8 id, str header, uint16 port


def contact_size(contact: Contact) -> int:
    """Upper bound of one encoded ``[id, ip, port]`` entry."""
    return CONTACT_FIXED_BYTES + len(contact.addr[0])


def value_size(value: bytes) -> int:
    return len(value) + 3


VALUE_HASH_CACHE = 4096


@functools.lru_cache(maxsize=VALUE_HASH_CACHE)
def value_hash(value: bytes) -> int:
    """A value's truncated SHA-256, computed once per value: the last ``VALUE_HASH_CACHE`` distinct values
    are remembered (a get hashes every value it collects, a holder its whole set for every lookup of the
    address, so a gateway looking the same address up hashed the same 256 values again each time)."""
    return int.from_bytes(hashlib.sha256(value).digest()[:8], "big")


def set_digest(values: list[bytes]) -> bytes:
    """Order-independent 8-byte digest of a value set: XOR of each value's truncated SHA-256."""
    x = 0
    for v in values:
        x ^= value_hash(v)
    return x.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Ping:
    tid: int
    sender_id: bytes
    nonce: bytes | None


@dataclass(frozen=True, slots=True)
class FindNode:
    tid: int
    sender_id: bytes
    nonce: bytes | None
    target: bytes


@dataclass(frozen=True, slots=True)
class FindValue:
    tid: int
    sender_id: bytes
    nonce: bytes | None
    address: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class Store:
    tid: int
    sender_id: bytes
    nonce: bytes | None
    address: bytes
    token: bytes
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Leave:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes] | None = None  # (public key, signature over leave_message); None: version 1


@dataclass(frozen=True, slots=True)
class Proof:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Pong:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes] | None
    challenge: bytes | None


@dataclass(frozen=True, slots=True)
class Nodes:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes] | None
    challenge: bytes | None
    token: bytes
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Values:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes] | None
    challenge: bytes | None
    token: bytes
    offset: int
    total: int
    digest: bytes
    values: tuple[bytes, ...]
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Stored:
    tid: int
    sender_id: bytes
    proof: tuple[bytes, bytes] | None
    challenge: bytes | None
    stored: int


@dataclass(frozen=True, slots=True)
class Busy:
    tid: int
    sender_id: bytes


Request = Ping | FindNode | FindValue | Store | Leave | Proof
Reply = Pong | Nodes | Values | Stored | Busy
Message = Request | Reply
REQUEST_TYPES = (Ping, FindNode, FindValue, Store, Leave, Proof)


def _contacts_out(contacts: tuple[Contact, ...]) -> list[list[object]]:
    return [[c.node_id, c.addr[0], c.addr[1]] for c in contacts]


def _proof_out(proof: tuple[bytes, bytes] | None) -> list[bytes] | None:
    return None if proof is None else [proof[0], proof[1]]


def encode(msg: Message) -> bytes:
    """Encode one message (our own output; raises WireError if it would exceed MAX_DATAGRAM)."""
    t = type(msg)
    if t is Ping:
        body: list[object] = [PING, msg.tid, msg.sender_id, msg.nonce]
    elif t is FindNode:
        body = [FIND_NODE, msg.tid, msg.sender_id, msg.nonce, msg.target]
    elif t is FindValue:
        body = [FIND_VALUE, msg.tid, msg.sender_id, msg.nonce, msg.address, msg.offset]
    elif t is Store:
        body = [STORE, msg.tid, msg.sender_id, msg.nonce, msg.address, msg.token, list(msg.values)]
    elif t is Leave:
        body = [LEAVE, msg.tid, msg.sender_id]
        if msg.proof is not None:
            body += [msg.proof[0], msg.proof[1]]
    elif t is Proof:
        body = [PROOF, msg.tid, msg.sender_id, _proof_out(msg.proof)]
    elif t is Pong:
        body = [PONG, msg.tid, msg.sender_id, _proof_out(msg.proof), msg.challenge]
    elif t is Nodes:
        body = [NODES, msg.tid, msg.sender_id, _proof_out(msg.proof), msg.challenge, msg.token,
                _contacts_out(msg.contacts)]
    elif t is Values:
        body = [VALUES, msg.tid, msg.sender_id, _proof_out(msg.proof), msg.challenge, msg.token, msg.offset,
                msg.total, msg.digest, list(msg.values), _contacts_out(msg.contacts)]
    elif t is Busy:
        body = [BUSY, msg.tid, msg.sender_id]
    elif t is Stored:
        body = [STORED, msg.tid, msg.sender_id, _proof_out(msg.proof), msg.challenge, msg.stored]
    else:
        raise WireError("cannot encode %r" % (t,))
    data = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_DATAGRAM:
        raise WireError("encoded %s is %d bytes > %d" % (t.__name__, len(data), MAX_DATAGRAM))
    return data


# ---- decoding: every field checked --------------------------------------------------------------------


def _int(v: object, what: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise WireError("%s must be an int in [%d, %d]" % (what, lo, hi))
    return v


def _bytes(v: object, what: str, lo: int, hi: int) -> bytes:
    if type(v) is not bytes or not lo <= len(v) <= hi:
        raise WireError("%s must be %d..%d bytes" % (what, lo, hi))
    return v


def _opt_nonce(v: object) -> bytes | None:
    if v is None:
        return None
    return _bytes(v, "nonce", NONCE_BYTES, NONCE_BYTES)


def _proof(v: object) -> tuple[bytes, bytes] | None:
    if v is None:
        return None
    if type(v) is not list or len(v) != 2:
        raise WireError("proof must be nil or [public_key, signature]")
    return (_bytes(v[0], "public key", 32, 32), _bytes(v[1], "signature", 1, 64))


def _values(v: object) -> tuple[bytes, ...]:
    if type(v) is not list or len(v) > 64:
        raise WireError("values must be a list of at most 64 byte strings")
    return tuple(_bytes(x, "value", 1, MAX_DATAGRAM) for x in v)


def _contacts(v: object) -> tuple[Contact, ...]:
    if type(v) is not list or len(v) > MAX_CONTACTS:
        raise WireError("contacts must be a list of at most %d entries" % MAX_CONTACTS)
    out = []
    for entry in v:
        if type(entry) is not list or len(entry) != 3:
            raise WireError("contact must be [id, ip, port]")
        node_id = _bytes(entry[0], "contact id", ID_BYTES, ID_BYTES)
        ip = contact_ip(entry[1])
        port = _int(entry[2], "contact port", 1, 65535)
        out.append(Contact(node_id, (ip, port)))
    return tuple(out)


_BROADCAST_V4 = ipaddress.IPv4Address("255.255.255.255")


def contact_ip(v: object) -> str:
    """A peer-supplied contact address: an IPv4 or IPv6 literal in its canonical text form, never a host
    name (a name would be resolved, synchronously, by whoever sends to it) and never an address that
    names no single node (unspecified, multicast, broadcast). Raises WireError otherwise."""
    if type(v) is not str or not 1 <= len(v) <= 45:
        raise WireError("contact ip must be a 1..45 character string")
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        raise WireError("contact ip must be an IP literal, not a host name") from None
    if ip.is_unspecified or ip.is_multicast or ip == _BROADCAST_V4:
        raise WireError("contact ip %s names no single node (unspecified, multicast or broadcast)" % v)
    if str(ip) != v:
        raise WireError("contact ip must be in canonical form")
    return v


_ARITY = {PING: 4, FIND_NODE: 5, FIND_VALUE: 6, STORE: 7, LEAVE: 5, PROOF: 4, PONG: 5, NODES: 7, VALUES: 11,
          STORED: 6, BUSY: 3}
_UNSIGNED_LEAVE_ARITY = 3  # the first version's LEAVE, still read


def decode(data: bytes, max_datagram: int = MAX_DATAGRAM) -> Message:
    """Decode and validate one datagram; raises WireError (only) when it is not a valid message."""
    if len(data) > max_datagram:
        raise WireError("datagram of %d bytes exceeds %d" % (len(data), max_datagram))
    try:
        body = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True,
            max_bin_len=max_datagram, max_str_len=64, max_array_len=64, max_map_len=0, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types (ValueError, ExtraData, ...)
        raise WireError("not a msgpack datagram: %s" % type(exc).__name__) from exc
    if type(body) is not list or len(body) < 3:
        raise WireError("datagram must be an array [kind, tid, id, ...]")
    kind = body[0]
    if type(kind) is not int or (_ARITY.get(kind) != len(body)
                                 and not (kind == LEAVE and len(body) == _UNSIGNED_LEAVE_ARITY)):
        raise WireError("unknown kind or wrong field count")
    tid = _int(body[1], "tid", 0, 0xFFFFFFFF)
    sender = _bytes(body[2], "sender id", ID_BYTES, ID_BYTES)
    if kind == PING:
        return Ping(tid, sender, _opt_nonce(body[3]))
    if kind == FIND_NODE:
        return FindNode(tid, sender, _opt_nonce(body[3]), _bytes(body[4], "target", ID_BYTES, ID_BYTES))
    if kind == FIND_VALUE:
        return FindValue(tid, sender, _opt_nonce(body[3]), _bytes(body[4], "address", ID_BYTES, ID_BYTES),
                         _int(body[5], "offset", 0, 1 << 20))
    if kind == STORE:
        values = _values(body[6])
        if not values:
            raise WireError("STORE needs at least one value")
        return Store(tid, sender, _opt_nonce(body[3]), _bytes(body[4], "address", ID_BYTES, ID_BYTES),
                     _bytes(body[5], "token", 1, MAX_TOKEN_BYTES), values)
    if kind == BUSY:
        return Busy(tid, sender)
    if kind == LEAVE:
        if len(body) == _UNSIGNED_LEAVE_ARITY:
            return Leave(tid, sender)
        return Leave(tid, sender, (_bytes(body[3], "public key", 32, 32), _bytes(body[4], "signature", 64, 64)))
    proof = _proof(body[3])
    if kind == PROOF:
        if proof is None:
            raise WireError("PROOF needs a proof")
        return Proof(tid, sender, proof)
    challenge = _opt_nonce(body[4])
    if kind == PONG:
        return Pong(tid, sender, proof, challenge)
    if kind == NODES:
        return Nodes(tid, sender, proof, challenge, _bytes(body[5], "token", 0, MAX_TOKEN_BYTES),
                     _contacts(body[6]))
    if kind == VALUES:
        return Values(tid, sender, proof, challenge, _bytes(body[5], "token", 0, MAX_TOKEN_BYTES),
                      _int(body[6], "offset", 0, 1 << 20), _int(body[7], "total", 0, 1 << 30),
                      _bytes(body[8], "digest", 0, 8), _values(body[9]), _contacts(body[10]))
    return Stored(tid, sender, proof, challenge, _int(body[5], "stored", 0, 64))
