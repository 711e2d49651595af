"""Simulator at small N (500 nodes): join-built tables, success under loss / crashes / churn, determinism."""

from __future__ import annotations

import pytest
from qis_gateway.swarm.sim import SimIdentity, Simulator, run_simulation


def test_sim_identity_proofs_are_checkable_and_bound_to_the_key() -> None:
    a, b = SimIdentity(b"a" * 32), SimIdentity(b"b" * 32)
    sig = a.sign(b"nonce")
    assert SimIdentity.verify(a.public_key, b"nonce", sig)
    assert not SimIdentity.verify(b.public_key, b"nonce", sig)
    assert not SimIdentity.verify(a.public_key, b"other", sig)


def test_tables_are_built_by_joining() -> None:
    sim = Simulator(seed=5)
    stats = sim.join_all(300)
    assert stats["join_messages_per_node"] > 10  # real traffic, not pre-filled tables
    sizes = [len(n.table) for n in sim.nodes]
    assert min(sizes) >= 20
    # every node's neighbourhood is right: its 5 true closest nodes are in its table
    ids = [n.table.own_int for n in sim.nodes]
    for node in sim.nodes[::37]:
        true5 = sorted((i for i in ids if i != node.table.own_int), key=lambda i: i ^ node.table.own_int)[:5]
        assert all(node.table.find(i) is not None for i in true5)
    assert sum(n.counters["drop_internal_error"] for n in sim.nodes) == 0


def test_run_simulation_500_nodes() -> None:
    res = run_simulation(500, 150, seed=1)
    assert res["nodes"] == 500 and res["lookups"] == 150
    assert res["success_rate"] == 1.0
    assert res["hops"]["p99"] <= 4
    assert res["messages"]["p50"] <= 10
    assert res["put_replicas"]["min"] >= 15
    assert res["internal_errors"] == 0
    assert set(res) >= {"nodes", "lookups", "success_rate", "hops", "messages", "seconds"}
    assert set(res["hops"]) >= {"p50", "p90", "p99", "max"}


@pytest.mark.parametrize("kw", [{"loss": 0.1}, {"kill_after_store": 0.3}, {"churn": 0.2}],
                         ids=["loss10", "kill30", "churn20"])
def test_run_simulation_500_nodes_adverse(kw: dict) -> None:
    res = run_simulation(500, 150, seed=2, **kw)
    assert res["success_rate"] >= 0.99, res
    assert res["internal_errors"] == 0
    if "loss" in kw:
        assert res["lost_messages"] > 0


def test_simulation_is_deterministic() -> None:
    a = run_simulation(200, 40, seed=9)
    b = run_simulation(200, 40, seed=9)
    for key in ("success_rate", "hops", "messages", "delivered_messages", "table_size"):
        assert a[key] == b[key], key


def test_run_until_event_stops_at_the_first_event_and_until_s_holds_the_clock() -> None:
    sim = Simulator(seed=3)
    first = sim.add_node()
    second = sim.add_node()
    second.bootstrap([first.sim_addr], sim.now)  # type: ignore[attr-defined]
    sim.flush(second)
    sim.run(until_s=0.001)  # before the first delivery (latency >= 2 ms): nothing happens
    assert sim.now == 0.001 and sim.delivered == 0 and not sim.events
    sim.run(until_event=True)
    events = sim.take_events()
    assert [type(ev).__name__ for _, ev in events] == ["JoinDone"]
    assert events[0][0] is second and len(second.table) == 1 and sim.delivered >= 2
