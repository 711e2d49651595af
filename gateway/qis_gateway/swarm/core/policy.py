"""Node policies that need no network state: STORE tokens and the per-source rate limit.

(Storage caps, fairness and eviction are ``storage_policy.py``.)

How it works:
- ``Tokens`` (BEP 5): token = first 8 bytes of HMAC-SHA256(secret, "ip|port"); the secret rotates every
  ``token_lifetime_s / 2`` and the previous one is still accepted, so a token lives 1/2 to 1 lifetime.
- ``ValidatedAddresses`` (issue 18 point 11): the IPs that showed they receive at their address, as two
  bitmaps of ``2**address_validation_bits`` bits indexed by a keyed hash of the IP (per-node secret, so
  nobody can aim at a set bit); the older is dropped when the token secret rotates. A few KB whatever
  the number of peers; an IP on a bit another one set passes too (the chance is the fill ratio, a few
  per cent), which bounds the average amplification, not each datagram's.
- Back-pressure (issue 18 point 4): a proven source refused by its bucket is told so with a BUSY answer
  (``busy_due``: at most one per ``rate_limit_busy_interval_s``), so a peer shedding load does not look
  dead to it; unproven sources are refused silently.
- ``RateLimiter`` (issue 18 point 5): token buckets per source (IP, or (IP, port) with
  ``rate_limit_key="addr"``), refilled at ``rate_limit_per_s`` up to ``rate_limit_burst``, in two classes,
  so forged source addresses cannot crowd out real peers:

  * *proven* sources (the node checked an id proof from that address: ``mark_proven``) keep their own
    bucket, in a table of at most ``rate_limit_max_sources`` (the least recently used dropped first);
    a forged datagram cannot earn this, because a proof needs the reply that went to the real address;
  * every other source is hashed (with a per-node secret, so nobody can aim at another's slot) onto one
    of ``rate_limit_slots`` fixed buckets, and all of them together also draw on one shared bucket of
    ``rate_limit_unproven_per_s`` (burst the same): a flood from any number of forged sources costs at
    most that budget, and a new node still gets through its own slot. A source we are awaiting a reply
    from (``expected(addr)``) skips the shared bucket.

  Nothing is ever rebuilt (the old table was filtered on every refusal once 4,096 sources were busy:
  82% CPU under 8,400 forged sources).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

from .config import SwarmConfig

Address = tuple[str, int]


class ValidatedAddresses:
    __slots__ = ("_key", "_bits", "_now", "_old")

    def __init__(self, rng: random.Random, bits: int) -> None:
        self._key = rng.getrandbits(128).to_bytes(16, "big")
        self._bits = bits
        self._now = bytearray(1 << max(0, bits - 3))
        self._old = bytearray(len(self._now))

    def _index(self, addr: Address) -> int:
        h = int.from_bytes(hashlib.blake2b(addr[0].encode(), key=self._key, digest_size=8).digest(), "big")
        return h & ((len(self._now) << 3) - 1)

    def mark(self, addr: Address) -> None:
        i = self._index(addr)
        self._now[i >> 3] |= 1 << (i & 7)

    def check(self, addr: Address) -> bool:
        i = self._index(addr)
        bit = 1 << (i & 7)
        return bool((self._now[i >> 3] | self._old[i >> 3]) & bit)

    def rotate(self) -> None:
        self._old = self._now
        self._now = bytearray(len(self._old))


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

    def rotate_if_due(self, now_s: float, rng: random.Random) -> bool:
        """Rotate the secret when due; True when it did."""
        if self._rotate_s is None:
            self._rotate_s = now_s + self._half_life_s
        elif now_s >= self._rotate_s:
            self._old_secret, self._secret = self._secret, rng.getrandbits(128).to_bytes(16, "big")
            self._rotate_s = now_s + self._half_life_s
            return True
        return False


class RateLimiter:
    __slots__ = ("_cfg", "_proven", "_slots", "_shared", "_salt", "_expected", "_by_ip", "refused_proven",
                 "refused_unproven")

    def __init__(self, cfg: SwarmConfig, rng: random.Random | None = None,
                 expected: Callable[[Address], bool] | None = None) -> None:
        self._cfg = cfg
        self._by_ip = cfg.rate_limit_key == "ip"
        self._proven: dict[object, list[float]] = {}
        self._slots: list[list[float] | None] = [None] * max(1, cfg.rate_limit_slots)
        self._shared = [cfg.rate_limit_unproven_per_s, -1.0]  # tokens, last refill
        self._salt = (rng or random.Random(0)).getrandbits(64)
        self._expected = expected
        self.refused_proven = 0  # datagrams refused from proven sources (their own bucket was empty)
        self.refused_unproven = 0

    def mark_proven(self, addr: Address) -> None:
        """The node checked an id proof from ``addr``: it keeps a bucket of its own from now on."""
        key = addr[0] if self._by_ip else addr
        table = self._proven
        if key not in table:
            table[key] = [self._cfg.rate_limit_burst, -1.0, -1.0e18]  # tokens, last refill, last BUSY
            if len(table) > self._cfg.rate_limit_max_sources:
                del table[next(iter(table))]

    def allow(self, addr: Address, now_s: float) -> bool:
        cfg = self._cfg
        key = addr[0] if self._by_ip else addr
        bucket = self._proven.get(key)
        if bucket is not None:
            del self._proven[key]  # move to the most recently used end
            self._proven[key] = bucket
            if _take(bucket, now_s, cfg.rate_limit_per_s, cfg.rate_limit_burst):
                return True
            self.refused_proven += 1
            return False
        i = hash((self._salt, key)) % len(self._slots)
        slot = self._slots[i]
        if slot is None:
            slot = self._slots[i] = [cfg.rate_limit_burst, now_s]
        if not _take(slot, now_s, cfg.rate_limit_per_s, cfg.rate_limit_burst):
            self.refused_unproven += 1
            return False
        if cfg.rate_limit_unproven_per_s <= 0 or (self._expected is not None and self._expected(addr)):
            return True  # 0: no shared cap
        if _take(self._shared, now_s, cfg.rate_limit_unproven_per_s, cfg.rate_limit_unproven_per_s):
            return True
        slot[0] = min(cfg.rate_limit_burst, slot[0] + 1.0)  # not spent: the shared budget refused
        self.refused_unproven += 1
        return False


    def busy_due(self, addr: Address, now_s: float) -> bool:
        """``addr`` is a proven source (just refused) owed a BUSY answer: at most one per
        ``rate_limit_busy_interval_s``. Unproven sources get none (their address may be forged)."""
        bucket = self._proven.get(addr[0] if self._by_ip else addr)
        if bucket is None or now_s - bucket[2] < self._cfg.rate_limit_busy_interval_s:
            return False
        bucket[2] = now_s
        return True


def _take(bucket: list[float], now_s: float, rate_per_s: float, burst: float) -> bool:
    if bucket[1] < 0:  # a bucket made by mark_proven: full at its first use
        bucket[1] = now_s
    tokens = min(burst, bucket[0] + max(0.0, now_s - bucket[1]) * rate_per_s)
    bucket[1] = now_s
    if tokens < 1.0:
        bucket[0] = tokens
        return False
    bucket[0] = tokens - 1.0
    return True
