"""The AI4I replay through the real system (issue 16), small: 600 rows over 3 sites.

Gateways are real `qis-gateway run` processes with their brokers, boards the device code under the
MicroPython unix port with the replay sensor. Checks: every reading answered and predicted before its
outcome went out, the outcomes reported are the rows' labels, QIS beats site-local learning and the base
rate, the in-process evaluator agrees with the real path, and what the swarm holds is only signed outcome
packets carrying addresses, quantised vectors and labels of the sites' own rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qis.schema import Schema
from qis_gateway.packets import verify
from qis_gateway.swarm.store_sqlite import SqliteValueStore
from qis_gateway.usefulness.data import load_rows, split_sites
from qis_gateway.usefulness.run import usefulness
from qis_gateway.usefulness.schema_ai4i import packaged_schema

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROWS, SITES, SEED = 600, 3, 4


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    workdir = tmp_path_factory.mktemp("ai4i")
    rows = load_rows()[:ROWS]
    # scored over every row (prequential): the last 30% of 600 rows holds only 3 failures
    return usefulness(rows, SITES, SEED, workdir=workdir, curves=False, scored_from=0), workdir


def test_every_reading_answered_before_its_outcome(replay: tuple[dict, Path]) -> None:
    out, _ = replay
    real = out["real_path"]
    assert out["lost"] == 0
    assert real["readings"] == ROWS and real["answered"] == ROWS
    assert real["board_exit_codes_ok"]
    assert real["outcomes_match_rows"]  # each board reported exactly its rows' labels, in order
    assert real["prequential_violations"] == 0
    assert real["rejected"] == 0
    assert real["outbox_pending"] == 0
    levels = 1 + len(packaged_schema()["coarser"])
    assert real["outcome_packets_stored"] == ROWS * levels


def test_qis_beats_site_local_and_base_rate(replay: tuple[dict, Path]) -> None:
    out, _ = replay
    assert out["qis"]["failures"] >= 10
    assert out["qis"]["pr_auc"] > out["site_local"]["pr_auc"]
    assert out["qis"]["pr_auc"] > out["base_rate"]["pr_auc"]
    assert out["qis"]["roc_auc"] > out["base_rate"]["roc_auc"]


def test_in_process_evaluator_agrees_with_the_real_path(replay: tuple[dict, Path]) -> None:
    out, _ = replay
    agreement = out["agreement"]
    # Not identical: which other sites' outcomes are in the swarm when a row is looked up depends on
    # timing in the real system; the evaluator assumes the previous round's are all in.
    assert agreement["mean_abs_diff_p_failure"] < 0.02
    assert abs(agreement["pr_auc_real"] - agreement["pr_auc_in_process"]) < 0.1


def test_only_addresses_quantised_vectors_and_outcome_packets_cross_the_swarm(replay: tuple[dict, Path]) -> None:
    _, workdir = replay
    rows = load_rows()[:ROWS]
    schema = Schema(packaged_schema())
    allowed: dict[bytes, set[tuple[tuple[int, ...], str]]] = {}
    for site_rows in split_sites(rows, SITES, SEED):
        for row in site_rows:
            fp = schema.fingerprint(row.reading)
            for address in schema.level_addresses(fp.fields):
                allowed.setdefault(address, set()).add((tuple(fp.vector), row.label))
    seen = 0
    for gw in sorted(workdir.glob("gw*")):
        store = SqliteValueStore(gw / "swarm" / "values.sqlite3")
        try:
            for address in store.addresses():
                assert address in allowed, "an address no reading of these rows has"
                for value in store.values(address, 100_000):
                    packet = verify(value, None, address)  # signed outcome packets only
                    assert packet.value is None and packet.weight == 1.0
                    assert packet.schema_id == schema.schema_id
                    assert (tuple(packet.vector), packet.label) in allowed[address]
                    seen += 1
        finally:
            store.close()
    assert seen > ROWS
