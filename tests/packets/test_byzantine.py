"""Byzantine input: every tampered packet is rejected with PacketError; every untouched one is accepted.
That nothing rejected ever reaches a summary is shown through the bridge in tests/gateway/test_gw_evidence.py."""

from __future__ import annotations

import struct

import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.packet_cache import VerifiedPacketCache, make_validator
from qis_gateway.packets import MAX_PACKET_BYTES, PacketError, verify

from packets.helpers import ADDRESS, KEY_A, KEY_B, KEY_EVIL, OTHER_ADDRESS, pub, signed

TRUSTED = frozenset({pub(KEY_A), pub(KEY_B)})
VALID = signed(label="bearing_wear", vector=(12, -40, 127), value=3.25)
VALID_NO_VALUE = signed(label="ok", vector=(5, 5, 5), value=None, weight=1.0)


def _rejected(data: bytes, **kwargs) -> str:
    with pytest.raises(PacketError) as err:
        verify(data, **kwargs)
    return err.value.reason


def flipped() -> list[tuple[int, int, bytes]]:
    """Every single byte of both valid packets changed: each bit alone, and all eight bits at once."""
    out = []
    for base in (VALID, VALID_NO_VALUE):
        for i in range(len(base)):
            for mask in (1, 2, 4, 8, 16, 32, 64, 128, 0xFF):
                data = bytearray(base)
                data[i] ^= mask
                out.append((i, mask, bytes(data)))
    return out


def test_valid_packets_are_accepted_with_and_without_checks() -> None:
    for data in (VALID, VALID_NO_VALUE):
        assert verify(data).label
        assert verify(data, trusted_keys=TRUSTED, address=ADDRESS).origin_key == pub(KEY_A)


def test_flipping_any_bit_or_byte_anywhere_is_rejected() -> None:
    cases = flipped()
    assert len(cases) == 9 * (len(VALID) + len(VALID_NO_VALUE))
    reasons: dict[str, int] = {}
    for i, mask, data in cases:
        with pytest.raises(PacketError) as err:
            verify(data)
        reasons[err.value.reason] = reasons.get(err.value.reason, 0) + 1
        assert err.value.reason in {"version", "field", "short", "long", "signature"}, (i, mask)
    # Most flips survive parsing and are caught by the signature; structural ones by the parser.
    assert reasons["signature"] > len(cases) // 2
    assert reasons["version"] == 18  # byte 0, nine masks, two packets


def test_every_truncation_is_rejected() -> None:
    for end in range(len(VALID)):
        assert _rejected(VALID[:end]) in {"short", "long", "signature", "field"}, end
    assert _rejected(b"") == "short"


def test_extensions_are_rejected() -> None:
    for extra in (b"\x00", b"\xff", VALID[-1:], b"\x00" * 64, VALID):
        reason = _rejected(VALID + extra)
        assert reason in {"long", "signature"}, extra
    assert _rejected(VALID + b"\x00" * (MAX_PACKET_BYTES - len(VALID) + 1)) == "long"


def test_swapped_public_key_is_rejected() -> None:
    key_at = len(VALID) - 96
    swapped = VALID[:key_at] + pub(KEY_B) + VALID[-64:]
    assert _rejected(swapped) == "signature"
    assert _rejected(swapped, trusted_keys=TRUSTED) == "signature"


def test_untrusted_resign_is_rejected_under_a_trust_list_only() -> None:
    # The attacker takes the valid packet's content and re-signs it with its own key: a valid packet.
    forged = signed(KEY_EVIL, label="bearing_wear", vector=(12, -40, 127), value=3.25)
    assert verify(forged).origin_key == pub(KEY_EVIL)  # open swarm: any valid signature counts
    assert _rejected(forged, trusted_keys=TRUSTED) == "untrusted"
    # Splicing a trusted key in front of the attacker's signature does not help either.
    spliced = forged[:-96] + pub(KEY_A) + forged[-64:]
    assert _rejected(spliced, trusted_keys=TRUSTED) == "signature"


def test_replay_under_another_address_is_rejected() -> None:
    assert _rejected(VALID, address=OTHER_ADDRESS) == "address"
    # Rewriting the address field to match the new storage address breaks the signature.
    moved = VALID[:2] + OTHER_ADDRESS + VALID[34:]
    assert _rejected(moved, address=OTHER_ADDRESS) == "signature"


def test_unknown_version_is_rejected() -> None:
    assert _rejected(b"\x03" + VALID[1:]) == "version"
    assert _rejected(b"\x00" + VALID[1:]) == "version"
    # a version 1 packet relabelled 2 reads 16 bytes of its tail as a nonce: refused all the same
    assert _rejected(b"\x02" + VALID[1:]) in ("short", "field", "signature")


def test_structurally_bad_but_well_sized_packets_give_clear_reasons() -> None:
    assert _rejected(VALID[:1] + b"\x03" + VALID[2:]) == "field"  # unknown flag bit
    nan_weight = VALID[:42] + struct.pack(">d", float("nan")) + VALID[50:]
    assert _rejected(nan_weight) == "field"


def test_cache_and_swarm_validator_reject_every_tampered_packet() -> None:
    cache = VerifiedPacketCache(max_entries=16)
    validate = make_validator(cache, TRUSTED)
    assert validate(ADDRESS, VALID) and validate(ADDRESS, VALID)
    assert not validate(OTHER_ADDRESS, VALID)  # cached, but the address is still checked
    for _, _, data in flipped():
        assert not validate(ADDRESS, data)
    assert not validate(ADDRESS, "not bytes")  # type: ignore[arg-type]
    assert not validate(ADDRESS, signed(KEY_EVIL))
    assert sum(cache.rejected.values()) == len(flipped()) + 3
    assert len(cache) == 1


def test_columns_refuse_packets_for_another_address() -> None:
    columns = PacketColumns(ADDRESS)
    with pytest.raises(PacketError) as err:
        columns.append(verify(signed(address=OTHER_ADDRESS)))
    assert err.value.reason == "address"
    assert len(columns) == 0
