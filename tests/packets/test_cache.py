"""VerifiedPacketCache: verify once per packet id (LRU), claims re-checked on every hit."""

from __future__ import annotations

import nacl.signing
import pytest
from qis_gateway import packet_cache
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import PacketError

from packets.helpers import ADDRESS, KEY_A, KEY_B, OTHER_ADDRESS, pub, signed


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = nacl.signing.VerifyKey.verify

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", counting)
    # These packets are signed in this process; count them as coming from elsewhere (see the test below).
    monkeypatch.setattr(packet_cache, "_was_signed_here", lambda packet_id: False)
    return calls


def test_a_packet_is_verified_once_however_often_it_is_read(verify_calls: list[int]) -> None:
    cache = VerifiedPacketCache(max_entries=8)
    data = signed()
    first = cache.verify(data)
    for _ in range(50):
        assert cache.verify(data, address=ADDRESS) is first
    assert len(verify_calls) == 1
    assert (cache.hits, cache.misses) == (50, 1)


def test_hits_still_check_address_and_trust(verify_calls: list[int]) -> None:
    cache = VerifiedPacketCache(max_entries=8)
    data = signed()
    cache.verify(data)
    with pytest.raises(PacketError) as err:
        cache.verify(data, address=OTHER_ADDRESS)
    assert err.value.reason == "address"
    with pytest.raises(PacketError) as err:
        cache.verify(data, trusted_keys={pub(KEY_B)})
    assert err.value.reason == "untrusted"
    assert cache.verify(data, trusted_keys={pub(KEY_A)}, address=ADDRESS).label == "bearing_wear"
    assert len(verify_calls) == 1
    assert cache.rejected == {"address": 1, "untrusted": 1}


def test_lru_evicts_the_least_recently_used(verify_calls: list[int]) -> None:
    cache = VerifiedPacketCache(max_entries=2)
    a, b, c = (signed(label=x) for x in "abc")
    ids = [cache.verify(x).packet_id for x in (a, b)]
    cache.verify(a)  # a is now the most recently used
    cache.verify(c)  # evicts b
    assert ids[0] in cache and ids[1] not in cache and len(cache) == 2
    before = len(verify_calls)
    cache.verify(b)
    assert len(verify_calls) == before + 1


def test_rejections_are_counted_not_cached(verify_calls: list[int]) -> None:
    cache = VerifiedPacketCache(max_entries=4)
    bad = signed()[:-1] + b"\x00"
    for _ in range(3):
        with pytest.raises(PacketError):
            cache.verify(bad)
    assert cache.rejected == {"signature": 3} and len(cache) == 0
    with pytest.raises(PacketError):
        cache.verify(b"\x00" * 600)
    assert cache.rejected["long"] == 1
    with pytest.raises(ValueError):
        VerifiedPacketCache(0)


def test_a_packet_signed_in_this_process_skips_the_signature_check_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """encode() remembers the ids it signed: the first verify of those exact bytes needs no Ed25519 check
    (the claims still run); altered bytes are verified in full and refused."""
    calls: list[int] = []
    real = nacl.signing.VerifyKey.verify
    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    cache = VerifiedPacketCache(max_entries=8)
    data = signed()
    packet = cache.verify(data, address=ADDRESS)
    assert calls == [] and packet.origin_key == pub(KEY_A)
    with pytest.raises(PacketError):
        cache.verify(signed(), trusted_keys={pub(KEY_B)})  # the trust list still applies
    forged = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(PacketError) as err:
        cache.verify(forged)
    assert err.value.reason == "signature" and calls == [1]
