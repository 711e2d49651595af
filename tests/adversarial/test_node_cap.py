"""Issue 18 point 6: STORE at the node-wide cap stays fast and does not starve the addresses in use.

The gateway's durable store (``SqliteValueStore``) filled to ``max_values_per_node`` = 100,000 values
(99,800 addresses of one value, plus one busy honest address of 200 that requesters read), then a flood
of 3,000 STOREs to fresh addresses through the node's storage policy. Before the fix a full node ran
``max()`` over every address and sorted 100,000 keys per STORE (139 ms p50) and drained the busy
address to one value; now it takes from the coldest address in O(1) and the busy one keeps its 200.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from qis_gateway.packets import value_signer
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.node import COUNTER_NAMES
from qis_gateway.swarm.core.storage_policy import StoragePolicy
from qis_gateway.swarm.store_sqlite import SqliteValueStore

pytestmark = [pytest.mark.slow, pytest.mark.adversarial]

CAP = 100_000
BUSY = b"\xbb" * 32


def _value(i: int) -> bytes:
    return i.to_bytes(8, "big") + os.urandom(192)  # packet-sized; value_signer reads a 32-byte "key"


def test_store_at_the_cap_is_fast_and_keeps_the_busy_address(tmp_path: Path) -> None:
    cfg = SwarmConfig(max_values_per_node=CAP)
    store = SqliteValueStore(tmp_path / "values.sqlite3", now_s=0.0)
    try:
        for i in range(200):
            store.add(BUSY, _value(i), 0.0, cfg.value_ttl_s)
        store._db.execute("BEGIN")
        for i in range(CAP - 200):  # one transaction: filling is not what is measured
            store.add(i.to_bytes(32, "big"), _value(i), 0.0, cfg.value_ttl_s)
        store._db.execute("COMMIT")
        assert store.total() == CAP
        assert len(store.values(BUSY, 256)) == 200  # requesters read the busy address
        policy = StoragePolicy(cfg, value_signer)
        counters = dict.fromkeys(COUNTER_NAMES, 0)
        took = []
        for i in range(3000):
            t0 = time.perf_counter()
            policy.store(store, (b"\xfe" * 24) + i.to_bytes(8, "big"), _value(10**6 + i), 1.0 + i / 1000, counters,
                         ("10.0.%d.%d" % divmod(i, 250), 4000))  # a flood from many hosts
            took.append(time.perf_counter() - t0)
            if i % 500 == 0:
                store.values(BUSY, 256)  # still in use during the flood
        took.sort()
        p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
        print("STORE at the cap of %d: p50 %.3f ms, p99 %.3f ms" % (CAP, p50 * 1e3, p99 * 1e3))
        assert counters["evicted_node_cap"] == 3000 and store.total() == CAP
        assert store.count(BUSY) == 200
        assert p50 <= 0.001  # the old scan: 139 ms
        # Goal: p99 <= 1 ms (0.68 and 0.87 ms measured here at load 5); SQLite commits on this shared 2-core machine
        # under load 6 show multi-ms stalls, so the test allows 25 ms (still 5x under the old p50).
        assert p99 <= 0.025
    finally:
        store.close()
