"""The three defects of the protocol author's reference code (docs/design.md, last section) are absent.

1. Signer id from a fixed key-encoding prefix: `publicKeyHex.slice(0, 16)` over SPKI DER gives every
   Ed25519 signer the id 302a300506032b65. Ours hashes the raw key.
2. Signature leaving nested fields uncovered (a JSON key whitelist that empties nested objects). Ours
   signs every byte before the signature: changing any field, with the old signature kept, is rejected.
3. Unsigned packets counted ("legacy packets without signatures still count"). Ours rejects them at
   verify, and the column store / synthesis refuse any packet that did not come out of verify.
"""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.signing
import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.packets import SIGNATURE_BYTES, PacketError, encode, signer_id, verify

from packets.helpers import ADDRESS, KEY_A, NOW_S, OTHER_ADDRESS, packet, signed, synthesise

SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")  # RFC 8410 SubjectPublicKeyInfo header


def test_defect1_signer_ids_are_distinct_where_the_prefix_ids_collide() -> None:
    keys = [nacl.signing.SigningKey(hashlib.sha256(b"k%d" % i).digest()) for i in range(200)]
    publics = [bytes(k.verify_key) for k in keys]
    reference_ids = {(SPKI_ED25519_PREFIX + p).hex()[:16] for p in publics}
    assert reference_ids == {"302a300506032b65"}  # the reference defect: one id for all
    ours = {verify(encode(packet(), k)).signer_id for k in keys}
    assert len(ours) == 200
    assert ours == {hashlib.sha256(p).digest() for p in publics}


def test_defect1_ids_depend_on_every_key_byte() -> None:
    base = bytes(range(32))
    ids = {signer_id(base[:i] + bytes([base[i] ^ 1]) + base[i + 1 :]) for i in range(32)}
    assert len(ids) == 32 and signer_id(base) not in ids


def _respliced(original: bytes, changed: bytes) -> bytes:
    """The changed content with the ORIGINAL signature: what a nested-field tamper looks like."""
    return changed[:-SIGNATURE_BYTES] + original[-SIGNATURE_BYTES:]


@pytest.mark.parametrize(
    "change",
    [
        {"address": OTHER_ADDRESS},
        {"schema_id": "machine-health/2"},
        {"created_s": NOW_S - 59},
        {"vector": (12, -40, 126)},
        {"vector": (13, -40, 127)},
        {"vector": (12, -40, 127, 0)},
        {"label": "bearing_wean"},
        {"value": 3.2500000000000004},
        {"value": None},
        {"weight": 0.7500000000000001},
    ],
)
def test_defect2_every_field_is_covered_by_the_signature(change: dict) -> None:
    original = packet()
    data = encode(original, KEY_A)
    tampered = _respliced(data, encode(dataclasses.replace(original, **change), KEY_A))
    assert tampered != data
    with pytest.raises(PacketError) as err:
        verify(tampered)
    assert err.value.reason == "signature"


def test_defect3_unsigned_packets_are_rejected_and_never_counted() -> None:
    data = signed()
    for unsigned in (data[:-SIGNATURE_BYTES], data[:-SIGNATURE_BYTES] + bytes(SIGNATURE_BYTES)):
        with pytest.raises(PacketError):
            verify(unsigned)
    hand_made = packet()  # an OutcomePacket that never went through verify()
    with pytest.raises(PacketError) as err:
        PacketColumns(ADDRESS).append(hand_made)
    assert err.value.reason == "unverified"
    with pytest.raises(PacketError) as err:
        synthesise((12, -40, 127), [verify(data), hand_made], NOW_S, min_n=1)
    assert err.value.reason == "unverified"
    assert synthesise((12, -40, 127), [verify(data)], NOW_S, min_n=1).n == 1
