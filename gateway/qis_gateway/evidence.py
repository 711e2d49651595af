"""The gateway's one path from an fp's addresses to the summary its board gets back (the bridge calls it).

How it works, for one fp (`Evidence.summarise`):

1. Level fallback: the schema's addresses are looked up exact first, then coarser. The first level whose
   synthesis has enough evidence answers; when none has, the level that held the most evidence (largest
   n, the finer on a tie) answers with enough = false. A swarm that cannot be reached ends the walk: the
   answer is what the levels consulted so far gave (n = 0 and enough = false when none). With
   `[synthesis] level_policy = "max"` every level is looked up (all at once) and those with enough evidence are
   combined, each outcome at its largest share (levelmix.py), for schemas whose coarser levels are
   different views of a situation rather than nested ones.
2. Per level, `Evidence.select`: one swarm lookup of up to `swarm.lookup_limit` values, then
   `select_packets`:
   - every value goes through the shared verified-packet cache (signature, address, trust list); each
     refusal is counted by reason and never reaches synthesis; duplicates (same packet id) count once;
   - the packets are ordered newest first and `cap_per_signer` keeps each origin gateway's newest m,
     with m the largest count such that (a) no signer holds more than `max_signer_share` of the
     selection, except that every signer may always contribute `min_per_signer`, and (b) the selection
     stays within `max_packets` (the budget is shared out evenly: when even one packet per signer is
     too many, the newest `max_packets` of those are kept). So one key cannot flood an address, and
     when an address holds more packets than are synthesised, the newest ones are used.
3. Synthesis (`synthesis.synthesise_columns`) over a column store built from the selection: similarity,
   recency weighting and the minimum-count guard, with the `[synthesis]` settings.
4. The result becomes one `BoardSummary` (shares and confidence in permille, level, hops, ms), the
   value the bridge hands to the summary frame encoder and to Home Assistant.

Caching between readings (`Evidence.select` / `Evidence.columns`, so every reading still takes this path):

- Lookups: a selection is kept per address for `lookup_cache_s` (the service passes `swarm.lookup_cache_s`,
  1 s by default; 0, the constructor's default, looks up per reading) and the
  readings of that second answer from it, so at hundreds of readings/s one address costs one swarm get
  and one verification pass a second instead of one per reading. Readings that arrive while a lookup of
  their address is under way wait for that lookup instead of starting their own. The gateway's own puts
  are added to the address's entry (`absorb`, called by the outbox flusher when a replica kept a put's
  packets; also to the result of a lookup under way), so an outcome stored here counts from the next
  reading on without a new lookup: the entry then holds what a lookup would return (the holders kept
  them) except another gateway's newest packets, which count at most `lookup_cache_s` later anyway.
  Those too when this gateway's swarm node holds the address (`heard`: the node tells of every value it
  keeps, and a lookup returns the node's own values first): in a swarm of up to k gateways that is every
  address. Both are merged at the address's next reading, once however many arrived. As the holders do,
  the entry keeps only the newest `values_per_signer` (the swarm's per-signer quota) of the signers of
  what is merged: a burst of puts no longer pushes the other gateways' packets out of it. A put that
  failed drops the entry (`forget`: what the holders kept is unknown). Before, every own put dropped the
  entry, so with outcomes flowing nearly every reading looked its addresses up again (the coarse levels
  with their 256 packets each). An unreachable swarm is never cached. At most
  `LOOKUP_CACHE_ADDRESSES` addresses are kept (least recently used dropped).
- Column stores: the last store of each address (same bound) is reused when the next selection of the
  address holds the same packets, and otherwise only the new packets are converted
  (`PacketColumns.reusing`); the arrays equal a fresh build bit for bit, so the summary does too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from qis_gateway.backend import Swarm, is_unavailable
from qis_gateway.columns import PacketColumns
from qis_gateway.config import SynthesisSettings
from qis_gateway.levelmix import combine
from qis_gateway.metrics import Metrics
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import OutcomePacket, PacketError, value_signer
from qis_gateway.swarm.core.storage_policy import newest_per_signer
from qis_gateway.synthesis import Summary, not_enough, synthesise_columns

log = logging.getLogger(__name__)

LOOKUP_CACHE_ADDRESSES = 256


@dataclass(frozen=True, slots=True)
class BoardSummary:
    """The summary as a board receives it: the one value passed to `qis.messages.encode_summary`."""

    enough: bool
    n: int
    top: tuple[tuple[str, int], ...]  # (label, share in permille), largest first
    conf: int  # confidence in permille
    mean: float | None
    level: int  # schema level that answered, 0 = exact address
    hops: int
    ms: int  # lookup + synthesis time

    @classmethod
    def of(cls, summary: Summary, level: int, hops: int, ms: int) -> BoardSummary:
        return cls(enough=summary.enough, n=summary.n,
                   top=tuple((label, _permille(share)) for label, share in summary.top),
                   conf=_permille(summary.confidence), mean=summary.mean_value, level=level, hops=hops, ms=ms)


def _permille(fraction: float) -> int:
    return max(0, min(1000, int(round(fraction * 1000))))


@dataclass
class Selection:
    """The packets of one address that synthesis may count, and what was left out (by reason)."""

    packets: list[OutcomePacket]
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    capped: int = 0


@dataclass
class _Cached:
    """A lookup kept for `lookup_cache_s`: its raw values (own puts appended), their selection, hops."""

    until: float
    values: tuple[bytes, ...]
    selection: Selection
    hops: int


def cap_per_signer(packets: Sequence[OutcomePacket], max_share: float, min_per_signer: int,
                   budget: int) -> list[OutcomePacket]:
    """Each signer's newest m packets (see the module docstring for m); `packets` must be newest first,
    and the result is too. R(m) = sum over signers of min(count, m) is the selection's size; since R grows
    ever more slowly, the m allowed by the share form one interval from 1, and a scan finds its end."""
    if not 0 < max_share <= 1 or min_per_signer < 1 or budget < 1:
        raise ValueError("need 0 < max_share <= 1, min_per_signer >= 1, budget >= 1")
    by_signer: dict[bytes, list[OutcomePacket]] = {}
    for packet in packets:
        by_signer.setdefault(packet.origin_key, []).append(packet)
    if not by_signer:
        return []
    counts = sorted(len(group) for group in by_signer.values())
    best, size, low = 1, 0, 0
    for m in range(1, counts[-1] + 1):
        while counts[low] < m:
            low += 1
        size += len(counts) - low  # R(m) = R(m - 1) + signers holding at least m
        if m > 1 and size > budget:
            break
        if m <= max(min_per_signer, max_share * size):
            best = m
        elif m > min_per_signer:
            break
    keep = {id(p) for group in by_signer.values() for p in group[:best]}
    return [p for p in packets if id(p) in keep][:budget]


def select_packets(values: Iterable[bytes], address: bytes, cache: VerifiedPacketCache,
                   trusted_keys: Collection[bytes] | None, settings: SynthesisSettings) -> Selection:
    """Raw swarm values fetched for `address` -> the verified, de-duplicated, capped packets to synthesise."""
    selection = Selection([])
    seen: set[bytes] = set()
    for value in values:
        try:
            packet = cache.verify(value, trusted_keys, address)
        except PacketError as exc:
            selection.rejected[exc.reason] = selection.rejected.get(exc.reason, 0) + 1
            continue
        if packet.packet_id in seen:
            selection.duplicates += 1
            continue
        seen.add(packet.packet_id)
        selection.packets.append(packet)
    selection.packets.sort(key=lambda p: p.created_s, reverse=True)  # stable: ties keep fetch order
    kept = cap_per_signer(selection.packets, settings.max_signer_share, settings.min_per_signer,
                          settings.max_packets)
    selection.capped = len(selection.packets) - len(kept)
    selection.packets = kept
    return selection


class Evidence:
    """Looks an fp's levels up in the swarm and synthesises its summary (the module docstring)."""

    def __init__(self, swarm: Swarm, cache: VerifiedPacketCache, metrics: Metrics, settings: SynthesisSettings,
                 *, lookup_limit: int, trusted_keys: Collection[bytes] | None = None,
                 clock: Callable[[], float] = time.time, lookup_cache_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic, values_per_signer: int | None = None) -> None:
        self.swarm = swarm
        self.cache = cache
        self.metrics = metrics
        self.settings = settings
        self.lookup_limit = lookup_limit
        self.trusted_keys = frozenset(trusted_keys) if trusted_keys else None
        self.clock = clock
        self.lookup_cache_s = lookup_cache_s
        self.monotonic = monotonic
        # The swarm's per-signer quota per address (None: the backend has none): what an absorbed put adds
        # is bounded like the holders bound it (`_merged`).
        self.values_per_signer = values_per_signer
        self._lookups: OrderedDict[bytes, _Cached] = OrderedDict()
        self._flights: dict[bytes, asyncio.Future[tuple[tuple[bytes, ...], Selection, int] | None]] = {}
        self._late_puts: dict[bytes, list[bytes]] = {}  # values stored while their address's lookup ran
        self._heard: dict[bytes, list[bytes]] = {}  # values stored since their address's cached lookup
        self._epoch = 0  # counts forget() calls: a lookup that started before its address's last one is not kept
        self._forgot_at: dict[bytes, int] = {}
        self._pruned_at = 0
        self._columns: OrderedDict[bytes, PacketColumns] = OrderedDict()
        self.lookups = 0  # swarm gets started
        self.cache_hits = 0  # selections answered from the cache or from another reading's lookup

    def absorb(self, address: bytes, values: Sequence[bytes]) -> None:
        """This gateway's put of `values` at `address` ended and a replica kept them: the cached lookup of
        the address (and the one under way, if any) gains them, so the next reading counts them."""
        if address in self._flights:
            self._gain(self._late_puts, address, values)
        if address in self._lookups:
            self._gain(self._heard, address, values)

    def heard(self, address: bytes, value: bytes) -> None:
        """This gateway's swarm node kept `value` at `address` (a peer's STORE when the node holds the
        address, or an own put): a lookup now returns it, so a cached lookup gains it too. In a swarm of up
        to k gateways every node holds every address, so the cache then misses nothing another gateway
        stored; in a bigger one the addresses this node holds are fresh. Merged at the address's next
        reading, not per STORE: one merge per reading however many STOREs came in between."""
        if address in self._flights or address in self._lookups:
            self.absorb(address, (value,))

    def _gain(self, pending: dict[bytes, list[bytes]], address: bytes, values: Sequence[bytes]) -> None:
        """Values waiting to join an address's selection, at most 2x what a lookup returns (the newest)."""
        waiting = pending.setdefault(address, [])
        waiting.extend(values)
        if len(waiting) > 2 * self.lookup_limit:
            del waiting[:-self.lookup_limit]

    def _merged(self, address: bytes, cached: _Cached, values: Sequence[bytes]) -> _Cached:
        """`cached` with `values` appended (each once), as many as a lookup returns at most (the first
        fetched give way), selected again. Refusals are not counted here: these values passed the swarm node's
        validator or are this gateway's own, and a lookup counts whatever it fetches."""
        have = set(cached.values)
        added = tuple(v for v in dict.fromkeys(values) if v not in have)
        if not added:
            return cached
        merged = cached.values + added
        if self.values_per_signer is not None:
            # Holders keep each signer's newest `values_per_signer` values at an address; without this
            # bound a burst of own puts filled the cached lookup with packets no holder keeps and pushed

            # of the values put are bounded.
            merged = tuple(newest_per_signer(merged, self.values_per_signer, value_signer,
                                            {value_signer(v) for v in added}))
        merged = merged[-self.lookup_limit:]
        selection = select_packets(merged, address, self.cache, self.trusted_keys, self.settings)
        return _Cached(cached.until, merged, selection, cached.hops)

    def forget(self, address: bytes) -> None:
        """A put to `address` failed (what its holders kept is unknown): the next reading looks it up again."""
        self._lookups.pop(address, None)
        self._heard.pop(address, None)
        self._epoch += 1
        self._forgot_at[address] = self._epoch
        if len(self._forgot_at) > 4 * LOOKUP_CACHE_ADDRESSES:  # bounded: then no lookup under way is kept
            self._forgot_at.clear()
            self._pruned_at = self._epoch

    async def summarise(self, query_vector: Sequence[int], addresses: Sequence[bytes]) -> BoardSummary:
        """The fallback walk over `addresses` (exact first); see the module docstring."""
        started = time.perf_counter()
        summary, level, hops = not_enough(), 0, 0
        mix = self.settings.level_policy == "max"
        enough_levels: list[tuple[int, Summary]] = []  # level_policy "max": every level with enough evidence
        # "max" reads every level anyway: look them up side by side (one round trip, not one per level).
        prefetched = await asyncio.gather(*(self.select(a) for a in addresses)) if mix else None
        for here, address in enumerate(addresses):
            found = prefetched[here] if prefetched is not None else await self.select(address)
            if found is None:
                break  # the swarm is unreachable: answer with what the finer levels gave
            selection, hops_here = found
            hops = max(hops, hops_here)
            candidate = self.synthesise(query_vector, self.columns(address, selection.packets))
            if mix:
                if candidate.enough:
                    enough_levels.append((here, candidate))
                elif candidate.n > summary.n:
                    summary, level = candidate, here
                continue
            if candidate.enough or candidate.n > summary.n:
                summary, level = candidate, here
            if candidate.enough:
                break
        if enough_levels:
            summary, level = combine(enough_levels, self.settings.top)
        ms = int((time.perf_counter() - started) * 1000)
        return BoardSummary.of(summary, level, hops, ms)

    async def select(self, address: bytes) -> tuple[Selection, int] | None:
        """The packets of `address` synthesis may count, and the lookup's hops; None when unreachable.
        Served from the lookup cache, or from a lookup of the address already under way (module docstring)."""
        if self.lookup_cache_s <= 0:
            found = await self._select(address)
            return None if found is None else (found[1], found[2])
        cached = self._lookups.get(address)
        if cached is not None:
            if cached.until > self.monotonic():
                self._lookups.move_to_end(address)
                self.cache_hits += 1
                heard = self._heard.pop(address, None)
                if heard:
                    cached = self._lookups[address] = self._merged(address, cached, heard)
                return cached.selection, cached.hops
            del self._lookups[address]
            self._heard.pop(address, None)  # a new lookup returns them
        flight = self._flights.get(address)
        if flight is None:
            flight = asyncio.ensure_future(self._select(address))
            self._flights[address] = flight
            started = self._epoch
            try:
                found = await asyncio.shield(flight)
            finally:
                if self._flights.get(address) is flight:
                    del self._flights[address]
                late = self._late_puts.pop(address, [])
            if found is not None and self._forgot_at.get(address, 0) <= started and self._pruned_at <= started:
                self._keep(address, _Cached(self.monotonic() + self.lookup_cache_s, *found), late)
        else:
            self.cache_hits += 1
            found = await asyncio.shield(flight)
        return None if found is None else (found[1], found[2])

    def _keep(self, address: bytes, entry: _Cached, late_puts: Sequence[bytes]) -> None:
        self._lookups[address] = self._merged(address, entry, late_puts) if late_puts else entry
        self._lookups.move_to_end(address)
        while len(self._lookups) > LOOKUP_CACHE_ADDRESSES:
            dropped, _ = self._lookups.popitem(last=False)
            self._heard.pop(dropped, None)

    async def _select(self, address: bytes) -> tuple[tuple[bytes, ...], Selection, int] | None:
        """One swarm lookup of `address`: its raw values, their selection and its hops."""
        self.lookups += 1
        try:
            result = await self.swarm.get(address, self.lookup_limit)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.debug("lookup of %s: swarm unavailable (%s)", address.hex()[:16], exc)
            return None
        self.metrics.lookup_hops.observe(result.hops)
        self.metrics.lookup_seconds.observe(result.elapsed_ms / 1000.0)
        values = tuple(result.values)
        selection = select_packets(values, address, self.cache, self.trusted_keys, self.settings)
        for reason, count in selection.rejected.items():
            self.metrics.invalid_packets.labels(reason).inc(count)
        return values, selection, result.hops

    def columns(self, address: bytes, packets: Sequence[OutcomePacket]) -> PacketColumns:
        """The column store synthesis reads: the address's last store, reused or rebuilt from what changed."""
        columns = PacketColumns.reusing(packets, address, self._columns.get(address))
        self._columns[address] = columns
        self._columns.move_to_end(address)
        while len(self._columns) > LOOKUP_CACHE_ADDRESSES:
            self._columns.popitem(last=False)
        return columns

    def synthesise(self, query_vector: Sequence[int], columns: PacketColumns) -> Summary:
        if len(columns) == 0:
            return not_enough()
        s = self.settings
        return synthesise_columns(query_vector, columns, self.clock(), half_life_s=s.half_life_s, min_n=s.min_n,
                                  top=s.top)
