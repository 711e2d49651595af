"""Housekeeping of a SwarmNode, run from ``handle_timer`` every ``maintenance_interval_s``.

How it works:
- Stored values past ``value_ttl_s`` expire; the STORE-token secret rotates when due (``policy.Tokens``).
- Buckets with no lookup in their range for ``refresh_interval_s`` (Kademlia §2.3): one with room gets a
  ``RefreshOp``; a full one has nothing to learn, so its least-recently-seen contact gets a PING instead
  (an answer moves it to the tail, silence evicts it and promotes a replacement), as BEP 5 does.
- The node's own values are re-stored in paced passes (Kademlia §2.5): a pass walks the published set's
  addresses in ascending order after a cursor, ceil(addresses * maintenance_interval_s /
  republish_interval_s) of them per tick, so it ends within one interval, and the next pass starts one
  interval after this one started. An address is thus re-stored once per interval, never all at once (a
  value put just before the cursor reaches its address is re-stored soon after its put; one put behind
  the cursor waits for the next pass). Values the validator now rejects (a changed trust list) are
  skipped, not deleted.
- A swarm of one: own values put while the routing table was empty (``SwarmNode._note_if_alone``) are
  handed to peers as soon as the table holds one: ``handover_per_tick`` addresses per tick, each address's
  locally held values in one put; an address whose put reached nobody is kept for a later tick.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from . import ops

if TYPE_CHECKING:
    from .node import SwarmNode


def run(node: SwarmNode, now_s: float) -> None:
    cfg = node.config
    node._maint_s = now_s + cfg.maintenance_interval_s
    node.counters["expired"] += node.store.expire(now_s)
    node._tokens.rotate_if_due(now_s, node.rng)
    table = node.table
    since_s = node._started_s if node._started_s is not None else now_s
    for i in table.stale_buckets(now_s, cfg.refresh_interval_s, since_s):
        bucket = table.buckets[i]
        if len(bucket) < cfg.k:
            ops.RefreshOp(node, i, None, now_s)
            continue
        table.mark_used(table.own_int ^ (1 << i), now_s)  # any id in bucket i
        node._ping_before_evict(bucket[0], now_s)
    if node._published is not None and (node._republish_after is not None or now_s >= node._republish_s):
        republish_next(node, now_s)
    if node._unreplicated and len(table):
        hand_over(node, now_s)


def hand_over(node: SwarmNode, now_s: float) -> None:
    """Put the next ``handover_per_tick`` addresses stored while alone to the peers now known."""
    cfg = node.config
    unreplicated = node._unreplicated
    batch = list(itertools.islice(unreplicated, cfg.handover_per_tick))
    for address in batch:
        del unreplicated[address]
        values = [v for v in node.store.values(address, cfg.max_values_per_address) if node._valid(address, v)]
        if values:
            ops.PutOp(node, 0, address, values, now_s, report=False, on_done=_handed)


def _handed(node: SwarmNode, op: ops.PutOp, now_s: float) -> None:
    if op.replicas == 0 and len(node._unreplicated) < node.config.handover_max_addresses:
        node._unreplicated.setdefault(op.address, None)  # nobody took it: try again at a later tick


def republish_next(node: SwarmNode, now_s: float) -> None:
    """Re-store the next slice of the node's own values (see the module docstring)."""
    cfg = node.config
    published = node.published
    if node._republish_after is None:  # a new pass
        node._republish_s = now_s + cfg.republish_interval_s
    n = published.count_addresses()
    if cfg.republish_interval_s > 0:
        size = math.ceil(n * cfg.maintenance_interval_s / cfg.republish_interval_s)
    else:
        size = n
    page = published.page(node._republish_after, size) if size > 0 else []
    node._republish_after = page[-1][0] if len(page) == size and page else None  # None: pass done
    for address, held in page:
        values = [v for v in held if node._valid(address, v)]
        if not values:
            continue
        for v in values:
            node._store_value(address, v, now_s)
        node._note_if_alone(address)
        ops.PutOp(node, 0, address, values, now_s, report=False)
