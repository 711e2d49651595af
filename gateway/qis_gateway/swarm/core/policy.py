"""Node policies that need no network state: storage caps and eviction, STORE tokens, per-source rate limit.

How it works:
- ``store_with_policy``: the eviction rule (docs/swarm.md). A full address gives up its value that
  expires first; a full node takes that value from the address holding the most values. Then the value
  is stored with expiry ``now + value_ttl_s`` (re-storing a held value only extends its expiry).
- ``Tokens`` (BEP 5): token = first 8 bytes of HMAC-SHA256(secret, "ip|port"); the secret rotates every
  ``token_lifetime_s / 2`` and the previous one is still accepted, so a token lives 1/2 to 1 lifetime.
- ``RateLimiter``: a token bucket per source (IP, or (IP, port) with ``rate_limit_key="addr"``), refilled
  at ``rate_limit_per_s`` up to ``rate_limit_burst``; at most ``rate_limit_max_sources`` buckets are kept
  (idle ones are dropped first; when all are busy, new sources are refused).
"""

from __future__ import annotations

import hmac
import random

from .config import SwarmConfig
from .store import ValueStore

Address = tuple[str, int]


def store_with_policy(store: ValueStore, cfg: SwarmConfig, address: bytes, value: bytes, now_s: float,
                      counters: dict[str, int]) -> None:
    if store.count(address) >= cfg.max_values_per_address:
        store.evict_for(address)
        counters["evicted_address_cap"] += 1
    elif store.total() >= cfg.max_values_per_node:
        biggest = max(store.addresses(), key=store.count)
        store.evict_for(biggest)
        counters["evicted_node_cap"] += 1
    if store.add(address, value, now_s, now_s + cfg.value_ttl_s):
        counters["stored"] += 1


class Tokens:
    __slots__ = ("_secret", "_old_secret", "_rotate_s", "_half_life_s")

    def __init__(self, rng: random.Random, lifetime_s: float) -> None:
        self._secret = rng.getrandbits(128).to_bytes(16, "big")
        self._old_secret = self._secret
        self._half_life_s = lifetime_s / 2
        self._rotate_s: float | None = None

    def issue(self, addr: Address, secret: bytes | None = None) -> bytes:
        msg = ("%s|%d" % (addr[0], addr[1])).encode()
        return hmac.digest(secret or self._secret, msg, "sha256")[:8]

    def check(self, token: bytes, addr: Address) -> bool:
        return hmac.compare_digest(token, self.issue(addr)) or hmac.compare_digest(
            token, self.issue(addr, self._old_secret))

    def rotate_if_due(self, now_s: float, rng: random.Random) -> None:
        if self._rotate_s is None:
            self._rotate_s = now_s + self._half_life_s
        elif now_s >= self._rotate_s:
            self._old_secret, self._secret = self._secret, rng.getrandbits(128).to_bytes(16, "big")
            self._rotate_s = now_s + self._half_life_s


class RateLimiter:
    __slots__ = ("_cfg", "_buckets")

    def __init__(self, cfg: SwarmConfig) -> None:
        self._cfg = cfg
        self._buckets: dict[object, list[float]] = {}

    def allow(self, addr: Address, now_s: float) -> bool:
        cfg = self._cfg
        key = addr[0] if cfg.rate_limit_key == "ip" else addr
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= cfg.rate_limit_max_sources:
                refill_s = cfg.rate_limit_burst / cfg.rate_limit_per_s
                self._buckets = {k: b for k, b in self._buckets.items() if now_s - b[1] < refill_s}
                if len(self._buckets) >= cfg.rate_limit_max_sources:
                    return False
            bucket = self._buckets[key] = [cfg.rate_limit_burst, now_s]
        tokens = min(cfg.rate_limit_burst, bucket[0] + (now_s - bucket[1]) * cfg.rate_limit_per_s)
        bucket[1] = now_s
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True
