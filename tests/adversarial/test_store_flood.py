"""Issue 18 point 1: a store flood with fresh keys must not erase honest evidence.

Real ``UdpSwarm`` nodes on loopback with the gateway's packet validator and ``signer_of``: three holders
and an honest origin on 127.0.0.1 hold 12 honest outcome packets (3 gateway keys x 4, ``bearing_wear``)
at one address. An attacker node on 127.0.0.66, built from the same core, then puts 300 validly signed
``all_clear`` packets there: from one key, or from 300 keys. Before the fix a full address dropped its
oldest values, so both floods evicted every honest packet from every holder and the summary flipped.
Now every honest packet stays on every holder, a late key holds at most half the evidence seen before
it (at least 8: here 8), 300 fresh keys from one source get 4 admitted, and the summary is unchanged.
In permissioned mode (a trust list) the holders refuse every untrusted value at STORE.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import nacl.signing
import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import select_packets
from qis_gateway.packet_cache import VerifiedPacketCache, make_validator
from qis_gateway.packets import OutcomePacket, encode, value_signer
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.synthesis import synthesise_columns

from .conftest import run

pytestmark = [pytest.mark.slow, pytest.mark.adversarial]

ADDRESS = hashlib.sha256(b"schema pump/1: class=B, temp=hot, vib=C").digest()
VECTOR = (40, -12, 90, 7)
CONFIG = SwarmConfig(rate_limit_key="addr")
# A signer arriving after 12 honest values may hold half of them, at least min_values_per_signer (8).
QUOTA = max(CONFIG.min_values_per_signer, int(12 * CONFIG.signer_quota_share))


def _key(seed: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(seed.encode()).digest())


def _packet(key: nacl.signing.SigningKey, label: str, n: int) -> bytes:
    return encode(OutcomePacket(ADDRESS, "pump/1", int(time.time()) - n, VECTOR, label), key)


def _summary(values: list[bytes]) -> str:
    """Top label as the gateway computes it: its own selection (verify, de-duplicate, per-signer cap,
    newest first) then the synthesis maths, with the default settings."""
    selection = select_packets(values, ADDRESS, VerifiedPacketCache(), None, SynthesisSettings())
    columns = PacketColumns.from_packets(selection.packets)
    return synthesise_columns(VECTOR, columns, time.time()).top[0][0]


async def _swarm(tmp: Path, trusted: list[bytes] | None) -> tuple[list[UdpSwarm], UdpSwarm]:
    def node(name: str, host: str, boot: list[tuple[str, int]], validator_trust: list[bytes] | None) -> UdpSwarm:
        return UdpSwarm((host, 0), tmp / name, boot, config=CONFIG, signer_of=value_signer,
                        validator=make_validator(VerifiedPacketCache(), validator_trust))

    first = node("h0", "127.0.0.1", [], trusted)
    await first.start()
    honest = [first]
    for i in range(1, 4):  # h1, h2 and the honest origin h3
        n = node("h%d" % i, "127.0.0.1", [first.address], trusted)
        await n.start()
        honest.append(n)
    attacker = node("attacker", "127.0.0.66", [first.address], None)  # its own node validates nothing extra
    await attacker.start()
    return honest, attacker


async def _flood(attacker: UdpSwarm, packets: list[bytes]) -> None:
    for i in range(0, len(packets), 20):
        await asyncio.gather(*(attacker.put(ADDRESS, p) for p in packets[i : i + 20]), return_exceptions=True)


async def _stop(nodes: list[UdpSwarm]) -> None:
    for n in nodes:
        await n.stop(graceful=False)


@pytest.mark.parametrize("keys", [1, 300])
def test_store_flood_keeps_every_honest_packet(tmp_path: Path, keys: int) -> None:
    async def main() -> None:
        honest, attacker = await _swarm(tmp_path, None)
        try:
            origin = honest[-1]
            good = [_packet(_key("gateway %d" % g), "bearing_wear", 10 * g + i) for g in range(3) for i in range(4)]
            for p in good:
                await origin.put(ADDRESS, p)
            before = _summary(list((await origin.get(ADDRESS, 256)).values))
            assert before == "bearing_wear"
            bad = [_packet(_key("sybil %d" % (i % keys)), "all_clear", 1000 + i) for i in range(300)]
            await _flood(attacker, bad)
            for h in honest:
                held = h.store.held(ADDRESS)
                assert set(good) <= set(held), "%s lost %d honest packets" % (h.address, len(set(good) - set(held)))
                flood_held = len(set(bad) & set(held))
                print("keys=%d holder %s: honest %d/12, flood %d/300" % (keys, h.address[1], len(set(good) & set(held)),
                                                                        flood_held))
                assert 1 <= flood_held <= (QUOTA if keys == 1 else CONFIG.new_signer_burst), flood_held
            assert _summary(list((await origin.get(ADDRESS, 256)).values)) == before
        finally:
            await _stop([*honest, attacker])

    run(main(), 120)


def test_permissioned_holders_refuse_untrusted_values_at_store(tmp_path: Path) -> None:
    trusted_keys = [bytes(_key("gateway %d" % g).verify_key) for g in range(3)]

    async def main() -> None:
        honest, attacker = await _swarm(tmp_path, trusted_keys)
        try:
            good = [_packet(_key("gateway %d" % g), "bearing_wear", g) for g in range(3)]
            for p in good:
                await honest[-1].put(ADDRESS, p)
            await _flood(attacker, [_packet(_key("sybil %d" % i), "all_clear", i) for i in range(40)])
            for h in honest:
                assert sorted(h.store.held(ADDRESS)) == sorted(good)
                assert h.node.counters["drop_invalid_value"] >= 1
        finally:
            await _stop([*honest, attacker])

    run(main(), 60)
