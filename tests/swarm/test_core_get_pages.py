"""GetOp's paging (core/get.py): a window of pages in flight per holder, offsets guessed from the first
page, short pages leave gaps that are asked for, a shrunken set ends the holder. One real ``SwarmNode``
whose only contact is a holder answered by hand, one round trip per round."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.events import GetDone
from qis_gateway.swarm.core.identity import NodeIdentity
from qis_gateway.swarm.core.node import SwarmNode
from qis_gateway.swarm.core.routing import Contact
from qis_gateway.swarm.core.store import MemoryValueStore

ADDRESS = hashlib.sha256(b"paged address").digest()
HOLDER = NodeIdentity.generate(b"h" * 32)
HOLDER_ADDR = ("10.0.0.3", 7000)
CFG = SwarmConfig(rate_limit_per_s=0.0)


def _node() -> SwarmNode:
    node = SwarmNode(NodeIdentity.generate(b"g" * 32), CFG, random.Random(2), MemoryValueStore(), None)
    node.table.add_proven(Contact(HOLDER.node_id, HOLDER_ADDR), 0.0)
    return node


def _page(held: list[bytes], offset: int) -> tuple[bytes, ...]:
    """What an honest holder sends from `offset`: as many values as fit in one datagram's budget."""
    budget = wire.MAX_DATAGRAM - wire.REPLY_OVERHEAD
    out: list[bytes] = []
    for v in held[offset:]:
        budget -= wire.value_size(v)
        if budget < 0:
            break
        out.append(v)
    return tuple(out)


def _get(node: SwarmNode, held: Callable[[int], list[bytes]], limit: int = 1000) -> tuple[list[int], GetDone]:
    """Run a get against the holder (`held(round)`: its set in that round); returns the FIND_VALUEs sent
    per round trip and the GetDone."""
    now = 0.0
    node.start_get(ADDRESS, limit, now)
    per_round: list[int] = []
    for rnd in range(1000):
        now += 0.001
        node.handle_timer(now)
        reqs = [m for m, addr in node.messages_to_send() if type(m) is wire.FindValue and addr == HOLDER_ADDR]
        if not reqs:
            break
        per_round.append(len(reqs))
        values = held(rnd)
        digest = wire.set_digest(values)
        for msg in reqs:
            page = _page(values, msg.offset)
            node.receive_message(wire.Values(msg.tid, HOLDER.node_id, None, None, b"t" * 8, msg.offset,
                                             len(values), digest if msg.offset == 0 else b"", page, ()),
                                 HOLDER_ADDR, now)
    done = [e for e in iter(node.next_event, None) if type(e) is GetDone]
    assert len(done) == 1
    return per_round, done[0]


def test_a_window_of_pages_brings_every_value_in_few_round_trips() -> None:
    held = [b"packet %04d " % i + b"x" * 180 for i in range(256)]  # ~6 per datagram: ~43 pages
    per_round, done = _get(_node(), lambda rnd: held)
    assert set(done.values) == set(held)
    pages = -(-len(held) // len(_page(held, 0)))
    assert max(per_round) == CFG.get_page_window
    assert sum(per_round) == pages  # every page asked once: the guesses were right
    assert len(per_round) <= 1 + -(-(pages - 1) // CFG.get_page_window)  # not one round trip per page


def test_pages_shorter_than_guessed_leave_gaps_that_are_asked_for() -> None:
    rnd = random.Random(5)
    held = [b"p%03d" % i + b"y" * rnd.choice((20, 60, 400)) for i in range(120)]  # sizes vary 5x
    per_round, done = _get(_node(), lambda r: held)
    assert set(done.values) == set(held)
    assert max(per_round) <= CFG.get_page_window


def test_a_set_that_shrinks_while_paged_ends_the_holder_there() -> None:
    held = [b"packet %04d " % i + b"z" * 180 for i in range(120)]
    per_round, done = _get(_node(), lambda rnd: held if rnd == 0 else held[:30])  # expired after the 1st
    assert set(held[:30]) <= set(done.values)
    # the first empty page ends it: at most the window in flight then, asked before the end was seen
    assert len(per_round) <= 3 and sum(per_round) <= 1 + 2 * CFG.get_page_window


def test_no_more_pages_than_the_limit_needs() -> None:
    held = [b"packet %04d " % i + b"x" * 180 for i in range(256)]
    per_round, done = _get(_node(), lambda rnd: held, limit=20)
    assert len(done.values) == 20
    per_page = len(_page(held, 0))
    assert sum(per_round) <= 1 + -(-(20 - per_page) // per_page)
