"""Storage fairness of a holder: what a STORE may take, and which value makes room (issue 18 point 1, 6).

How it works (``StoragePolicy.store``; the swarm core stays free of packet formats: the gateway injects
``signer_of(value) -> bytes | None``, the key that signed an outcome packet, and the validator has already
checked that signature before a value gets here):

- **Per-signer quota per address**, enforced by the holder, and earned by seniority: the first signer
  seen at an address may hold ``max_values_per_signer`` values there; a later one ``signer_quota_share``
  (1/2) of the values held by the signers seen before it, at least ``min_values_per_signer`` and at most
  ``max_values_per_signer``. At its quota a signer's own oldest value gives way (its newest are kept).
  So one key cannot fill an address, and a key arriving at an address with evidence cannot outnumber
  that evidence (libp2p Kademlia bounds provider records per key and peer; here the bound also follows
  who was there first).
- **A full address** (``max_values_per_address``) takes from the largest signer there, and among equally
  large signers from the one seen last (whose first value here is newest); a new signer that would be that
  victim is refused instead. A signer holding fewer values than another is never the victim, so an
  established signer's last values go only after every larger or newer signer has been cut to its size.
- **Admission of new signers is paced per source** (the STORE's source IP, which its token proved; BEP 5):
  a signer not yet held at an address is admitted only if the source's bucket for that address
  (``new_signer_burst``, one more per ``new_signer_interval_s``) and its bucket over all addresses
  (``new_signers_per_source_burst``, ``new_signers_per_source_per_s``) both have a token. One host can
  therefore not bring hundreds of fresh keys to an address at once. Both tables are bounded
  (``admission_table_size``, the oldest entry dropped first), O(1) per STORE, no rebuild.
- **A full node** (``max_values_per_node``) takes the soonest-expiring value of the store's coldest address
  (never read, oldest first; then least recently read: ``store.AddressHeat``), O(1), instead of a scan
  for the largest address (139 ms per STORE at 100,000 values) that drained the busiest honest address.
- Values without a signer (``signer_of`` absent or returning None: the simulator, a bare ``qis-swarm
  node``) are one anonymous signer exempt from quota and pacing: the address then keeps the old rule
  (the value that expires first gives way).
- Permissioned mode (a trust list) needs nothing here: the validator refuses untrusted signers at STORE.

Values re-stored while held only have their expiry raised (no quota or admission check).

An origin's multi-value put sends only what a holder can still hold once it has stored the whole put
(``StoragePolicy.surviving``): of one signer at most ``max_values_per_signer`` (and ``max_values_per_address``)
values, its last. The older ones would each be stored and then evicted by the put's own newer values (the
quota keeps a signer's newest), so a holder ends with the same values either way; sending them cost every
holder a signature check, an insert and a delete per value. Under a backlog the gateway puts 128 packets
of one address at once, and the bench's 4 shared level addresses made 3 of every 4 such packets waste.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from .config import SwarmConfig
from .store import ValueStore

Address = tuple[str, int]
SignerOf = Callable[[bytes], "bytes | None"]
COUNTER_NAMES = ("evicted_signer_quota", "refused_new_signer", "refused_address_full", "put_superseded")
SIGNER_MEMO = 8192  # values whose signer is remembered (the keys are the held values themselves)
_UNKNOWN = object()


class _Buckets:
    """Token buckets by key, at most ``size`` of them (the oldest-created dropped first)."""

    __slots__ = ("_rate", "_burst", "_size", "_table")

    def __init__(self, rate_per_s: float, burst: float, size: int) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._size = max(1, size)
        self._table: dict[object, list[float]] = {}

    def take(self, key: object, now_s: float) -> bool:
        b = self._table.get(key)
        if b is None:
            if len(self._table) >= self._size:
                del self._table[next(iter(self._table))]
            b = self._table[key] = [self._burst, now_s]
        tokens = min(self._burst, b[0] + max(0.0, now_s - b[1]) * self._rate)
        b[1] = now_s
        if tokens < 1.0:
            b[0] = tokens
            return False
        b[0] = tokens - 1.0
        return True

    def give_back(self, key: object) -> None:
        b = self._table.get(key)
        if b is not None:
            b[0] = min(self._burst, b[0] + 1.0)


class StoragePolicy:
    def __init__(self, cfg: SwarmConfig, signer_of: SignerOf | None = None) -> None:
        self.cfg = cfg
        self.signer_of = signer_of
        size = cfg.admission_table_size
        per_address_rate = 1.0 / cfg.new_signer_interval_s if cfg.new_signer_interval_s > 0 else 0.0
        self._per_address = _Buckets(per_address_rate, cfg.new_signer_burst, size)
        self._per_source = _Buckets(cfg.new_signers_per_source_per_s, cfg.new_signers_per_source_burst, size)
        self._memo: dict[bytes, object] = {}  # value -> its signer (``_signers``)

    def store(self, store: ValueStore, address: bytes, value: bytes, now_s: float, counters: dict[str, int],
              source: Address | None = None) -> bool:
        """Apply the policy to one validated value; True when it is held afterwards."""
        cfg = self.cfg
        signer_of = self.signer_of
        if signer_of is None:
            return self._store_anonymous(store, address, value, now_s, counters)
        held = store.held(address)
        if value in held:
            store.add(address, value, now_s, now_s + cfg.value_ttl_s)  # raises its expiry only
            return True
        signer = _signer(signer_of, value)
        signers = self._signers(held)
        counts: dict[bytes | None, int] = {}
        for s in signers:  # insertion order: the first key seen first
            counts[s] = counts.get(s, 0) + 1
        mine = counts.get(signer, 0)
        if mine == 0 and signer is not None and source is not None and not self._admit(source[0], address, now_s):
            counters["refused_new_signer"] += 1
            return False
        victim: bytes | None | bool = False  # False: nothing to evict
        if signer is not None and mine >= self._quota(counts, signer):
            victim = signer
            counters["evicted_signer_quota"] += 1
        elif len(held) >= cfg.max_values_per_address:
            counts[signer] = mine + 1  # the newcomer competes too; a new signer is the newest seen
            victim = max(counts, key=_rank(counts))
            if victim == signer and mine == 0:
                counters["refused_address_full"] += 1
                return False
            counters["evicted_address_cap"] += 1
        if victim is not False:
            oldest = next(v for v, s in zip(held, signers, strict=True) if s == victim)
            store.remove(address, oldest)
        self._make_node_room(store, counters)
        if store.add(address, value, now_s, now_s + cfg.value_ttl_s):
            counters["stored"] += 1
        return True

    def surviving(self, values: list[bytes]) -> list[bytes]:
        """``values`` (one put, oldest first) without those a holder would evict before the put ends: of
        each signer only its last ``max_values_per_signer`` (at most ``max_values_per_address``) distinct
        values, in the original order. A later signer's quota can be smaller (a share of the earlier
        signers'), never larger, so nothing a holder could keep is dropped. Values without a signer are all
        kept (their address-cap rule is not per signer)."""
        if self.signer_of is None:
            return values
        cap = min(self.cfg.max_values_per_signer, self.cfg.max_values_per_address)
        distinct = list(dict.fromkeys(values))  # a holder orders a repeated value by its first store
        if len(distinct) <= cap:
            return distinct
        return newest_per_signer(distinct, cap, self.signer_of)

    def _signers(self, held: list[bytes]) -> list[bytes | None]:
        """The signer of each held value, remembered per value: every STORE looks at all the values of
        its address (up to 256), and reading each signer again was a third of a holder's policy time."""
        memo = self._memo
        out: list[bytes | None] = []
        for v in held:
            s = memo.get(v, _UNKNOWN)
            if s is _UNKNOWN:
                s = _signer(self.signer_of, v)  # type: ignore[arg-type]
                if len(memo) >= SIGNER_MEMO:
                    memo.clear()  # bounded; refilled from the next STOREs
                memo[v] = s
            out.append(s)  # type: ignore[arg-type]
        return out

    def _quota(self, counts: dict[bytes | None, int], signer: bytes) -> int:
        """How many values ``signer`` may hold here: the first signer seen, ``max_values_per_signer``; a later
        one, ``signer_quota_share`` of the values of the signers seen before it, within
        [``min_values_per_signer``, ``max_values_per_signer``]."""
        cfg = self.cfg
        if cfg.signer_quota_share <= 0:
            return cfg.max_values_per_signer
        earlier = 0
        for s, n in counts.items():  # first seen first
            if s == signer:
                break
            earlier += n
        if earlier == 0:
            return cfg.max_values_per_signer
        share = int(earlier * cfg.signer_quota_share)
        return max(cfg.min_values_per_signer, min(cfg.max_values_per_signer, share))

    def _store_anonymous(self, store: ValueStore, address: bytes, value: bytes, now_s: float,
                         counters: dict[str, int]) -> bool:
        cfg = self.cfg
        if store.count(address) >= cfg.max_values_per_address:
            store.evict_for(address)
            counters["evicted_address_cap"] += 1
        else:
            self._make_node_room(store, counters)
        if store.add(address, value, now_s, now_s + cfg.value_ttl_s):
            counters["stored"] += 1
        return True

    def _make_node_room(self, store: ValueStore, counters: dict[str, int]) -> None:
        if store.total() >= self.cfg.max_values_per_node:
            coldest = store.coldest_address()
            if coldest is not None:
                store.evict_for(coldest)
                counters["evicted_node_cap"] += 1

    def _admit(self, ip: str, address: bytes, now_s: float) -> bool:
        if not self._per_address.take((ip, address), now_s):
            return False
        if not self._per_source.take(ip, now_s):
            self._per_address.give_back((ip, address))
            return False
        return True


def newest_per_signer(values: Sequence[bytes], n: int, signer_of: SignerOf,
                      only: Collection[bytes | None] | None = None) -> list[bytes]:
    """`values` (oldest first) with at most the last `n` of each signer (of the signers in `only`, when
    given), in their order: what a holder's per-signer quota leaves of them. Values without a signer are
    all kept. Also the gateway's lookup cache bounds what it merges with it (evidence.py)."""
    left: dict[bytes, int] = {}
    keep: list[bytes] = []
    for v in reversed(values):  # newest first
        s = _signer(signer_of, v)
        if s is not None and (only is None or s in only):
            seen = left.get(s, 0)
            if seen >= n:
                continue
            left[s] = seen + 1
        keep.append(v)
    keep.reverse()
    return keep


def _signer(signer_of: SignerOf, value: bytes) -> bytes | None:
    try:
        return signer_of(value)
    except Exception:  # a value the validator let through always has one; be safe anyway
        return None


def _rank(counts: dict[bytes | None, int]) -> Callable[[bytes | None], tuple[int, int]]:
    order = {s: i for i, s in enumerate(counts)}  # first seen first; the newcomer was added last
    return lambda s: (counts[s], order[s])
