"""Bucket refresh (RefreshOp): a joining node's buckets end full and spread over their whole range.

Why it matters: a bucket filled by one lookup towards one random id holds only the nodes around that
point, and later lookups into the rest of the bucket's range then gain few bits per hop."""

from __future__ import annotations

from qis_gateway.swarm.events import JoinDone
from qis_gateway.swarm.sim import Simulator, config_with


def _quarter(own: int, other: int, bucket: int) -> int:
    return ((own ^ other) >> (bucket - 2)) & 3


def test_join_fills_every_bucket_spread_over_its_quarters() -> None:
    cfg = config_with(join_refresh_buckets=256)
    sim = Simulator(seed=3, config=cfg)
    sim.prefill_ideal(3000)  # a converged network to join (message-free baseline tables)
    ids = [n.table.own_int for n in sim.nodes]
    node = sim.add_node()
    node.bootstrap([sim.nodes[0].sim_addr], sim.now)
    sim.flush(node)
    sim.run(until_event=True)
    assert any(isinstance(ev, JoinDone) for n, ev in sim.take_events() if n is node)
    own = node.table.own_int
    checked = 0
    for bucket in range(255, 245, -1):
        in_range = [i for i in ids if (i ^ own).bit_length() - 1 == bucket]
        per_quarter = [sum(1 for i in in_range if _quarter(own, i, bucket) == q) for q in range(4)]
        if min(per_quarter) < cfg.k:
            continue  # a sparse range: the self-lookup, not the refresh, decides this bucket
        held = node.table.buckets.get(bucket, [])
        assert len(held) == cfg.k, (bucket, len(held))
        quarters = [sum(1 for c in held if _quarter(own, c.id_int, bucket) == q) for q in range(4)]
        assert min(quarters) >= 2 and max(quarters) <= 10, (bucket, quarters)  # spread, not bunched
        checked += 1
    assert checked >= 4
    # the nodes it talked to whose bucket for it had room (the prefilled far buckets are full) hold it
    holders = sum(1 for n in sim.nodes[:-1] if n.table.find(own) is not None)
    assert holders >= 10


def test_refresh_of_a_full_bucket_sends_nothing() -> None:
    sim = Simulator(seed=4, config=config_with(join_refresh_buckets=256))
    sim.prefill_ideal(300)
    node = sim.nodes[0]
    full = next(i for i, b in node.table.buckets.items() if len(b) >= sim.config.k)
    from qis_gateway.swarm import ops

    before = node.counters["sent"]
    done = []
    ops.RefreshOp(node, full, lambda n, op, now: done.append(op.messages), sim.now)
    assert done == [0] and node.counters["sent"] == before


def test_maintenance_checks_a_stale_full_bucket_and_evicts_its_dead_oldest_contact() -> None:
    sim = Simulator(seed=6, config=config_with(refresh_interval_s=30.0, maintenance_interval_s=10.0))
    sim.prefill_ideal(400)
    node = sim.nodes[0]
    full = [i for i, b in sorted(node.table.buckets.items(), reverse=True) if len(b) >= sim.config.k]
    dead, alive = node.table.buckets[full[0]][0], node.table.buckets[full[1]][0]
    sim.kill(sim.by_addr[dead.addr])
    node.handle_timer(sim.now)  # starts the node's clock
    sim.flush(node)
    sim.run(until_s=sim.now + 45.0)
    assert node.table.find(dead.id_int) is None
    assert node.counters["contacts_evicted"] >= 1
    assert node.table.buckets[full[1]][-1] is alive  # answered: moved to the tail, kept
