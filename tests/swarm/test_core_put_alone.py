"""A node that knows nobody yet: a put ends at once with zero replicas (the caller queues and retries),
it does not crash (it raised AttributeError inside PutOp before)."""

from __future__ import annotations

import random

from qis_gateway.swarm.config import SwarmConfig
from qis_gateway.swarm.events import PutDone
from qis_gateway.swarm.identity import NodeIdentity
from qis_gateway.swarm.node import SwarmNode
from qis_gateway.swarm.store import MemoryValueStore


def test_put_with_an_empty_routing_table_reports_zero_replicas() -> None:
    node = SwarmNode(NodeIdentity.generate(b"\x01" * 32), SwarmConfig(), random.Random(1), MemoryValueStore())
    op = node.start_put(b"\x07" * 32, b"value", 0.0)
    events = []
    while (event := node.next_event()) is not None:
        events.append(event)
    done = [e for e in events if isinstance(e, PutDone)]
    assert len(done) == 1 and done[0].op_id == op and done[0].replicas == 0
    assert node.store.count(b"\x07" * 32) == 1  # kept locally, as the origin's own copy
