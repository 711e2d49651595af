"""Synthesis numerics against a hand-computed example, plus ties, zero vectors, a single packet,
all-negative similarity, decay, the minimum-count guard, the fallback rule and the loop baseline."""

from __future__ import annotations

import math
import random

import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.evidence import BoardSummary
from qis_gateway.packets import PacketError
from qis_gateway.synthesis import Summary, synthesise_columns

from packets.helpers import KEY_A, KEY_B, NOW_S, synthesise, verified
from packets.oracle import summaries_agree, synthesise_loop

HALF = 100.0  # half-life used by the hand example, seconds

# Hand-computed example. Query q = (3, 4), |q| = 5, now = NOW_S, half-life 100 s.
#   pkt  vector   age  own c  label  value  cos s        recency r  w = max(s,0)*r*c
#   A    (3,4)      0  1.0    ok     2.0    25/25 = 1     1          1.0
#   B    (4,3)    100  1.0    ok     4.0    24/25 = 0.96  0.5        0.48
#   C    (0,5)      0  0.5    wear   -      20/25 = 0.8   1          0.4
#   D    (-3,-4)    0  1.0    fail   100    -1 -> 0       1          0      (negative similarity counts nothing)
#   E    (0,0)      0  1.0    fail   -      zero vector: 0 1         0      (cannot be shown similar)
#   F    (5,0)    200  0.8    wear   1.0    15/25 = 0.6   0.25       0.12
# sum w = 2.0, sum w^2 = 1 + 0.2304 + 0.16 + 0.0144 = 1.4048 -> n = 4, n_eff = 4 / 1.4048 = 2.847380
# shares: ok = 1.48 / 2 = 0.74, wear = 0.52 / 2 = 0.26 (fail has no weight, so it is absent)
# weighted mean similarity = (1*1 + .48*.96 + .4*.8 + .12*.6) / 2 = 1.8528 / 2 = 0.9264
# Wilson 95% lower bound, p = 0.74, n = 2.847380, z = 1.96: z^2/n = 1.349168;
#   centre = 0.74 + 0.674584 = 1.414584; spread = 1.96 * sqrt(0.1924/n + 1.349168/(4n)) = 0.845368;
#   lower = (1.414584 - 0.845368) / 2.349168 = 0.242306 -> confidence = 0.242306 * 0.9264 = 0.224472
# mean value over A, B, F: (1*2 + .48*4 + .12*1) / 1.6 = 4.04 / 1.6 = 2.525
#   (their own n_eff = 1.6^2 / (1 + .2304 + .0144) = 2.0565 >= min_n = 2, so the mean is reported)
HAND = [
    ("ok", (3, 4), 0, 1.0, 2.0),
    ("ok", (4, 3), 100, 1.0, 4.0),
    ("wear", (0, 5), 0, 0.5, None),
    ("fail", (-3, -4), 0, 1.0, 100.0),
    ("fail", (0, 0), 0, 1.0, None),
    ("wear", (5, 0), 200, 0.8, 1.0),
]


def make(rows, key=KEY_A) -> list:
    return [
        verified(key, label=label, vector=vec, created_s=NOW_S - age, weight=c, value=value)
        for label, vec, age, c, value in rows
    ]


def test_hand_computed_example() -> None:
    s = synthesise((3, 4), make(HAND), NOW_S, half_life_s=HALF, min_n=2, top=5)
    assert s.enough and s.n == 4
    assert s.n_eff == pytest.approx(2.847380, rel=1e-6)
    assert [label for label, _ in s.top] == ["ok", "wear"]
    assert [share for _, share in s.top] == pytest.approx([0.74, 0.26], rel=1e-12)
    assert s.confidence == pytest.approx(0.224472, rel=1e-5)
    assert s.mean_value == pytest.approx(2.525, rel=1e-12)
    # what the board gets: shares and confidence in permille, beside the level, hops and time of the lookup
    assert BoardSummary.of(s, level=0, hops=2, ms=1) == BoardSummary(True, 4, (("ok", 740), ("wear", 260)), 224,
                                                                     s.mean_value, 0, 2, 1)


def test_hand_example_below_min_n_says_not_enough() -> None:
    s = synthesise((3, 4), make(HAND), NOW_S, half_life_s=HALF, min_n=3)
    assert s == Summary(False, 4, s.n_eff, (), 0.0, None)
    assert s.n_eff == pytest.approx(2.847380, rel=1e-6)


def test_shares_sum_to_one_and_top_limits() -> None:
    rng = random.Random(5)
    rows = [(rng.choice("abcdefg"), (rng.randint(-127, 127), rng.randint(-127, 127)), rng.randrange(500),
             rng.uniform(0.1, 1), None) for _ in range(60)]  # fmt: skip
    columns = PacketColumns.from_packets(make(rows))
    full = synthesise_columns((50, 60), columns, NOW_S, half_life_s=HALF, top=10)
    assert math.fsum(share for _, share in full.top) == pytest.approx(1.0, abs=1e-12)
    assert [share for _, share in full.top] == sorted((share for _, share in full.top), reverse=True)
    assert synthesise_columns((50, 60), columns, NOW_S, half_life_s=HALF, top=2).top == full.top[:2]


def test_exact_ties_are_broken_by_label() -> None:
    rows = [("zeta", (1, 0), 0, 0.5, None), ("alpha", (1, 0), 0, 0.5, None), ("mid", (1, 0), 0, 0.5, None)]
    s = synthesise((1, 0), make(rows), NOW_S, min_n=1)
    assert s.top == (("alpha", pytest.approx(1 / 3)), ("mid", pytest.approx(1 / 3)), ("zeta", pytest.approx(1 / 3)))


def test_ties_up_to_summation_order_are_ties() -> None:
    # 0.1 + 0.2 != 0.3 in binary floating point; the two labels still tie and sort by name.
    rows = [("b", (1, 0), 0, 0.1, None), ("b", (1, 0), 0, 0.2, None), ("a", (1, 0), 0, 0.3, None)]
    s = synthesise((1, 0), make(rows), NOW_S, half_life_s=None, min_n=1)
    assert [label for label, _ in s.top] == ["a", "b"]
    rows[2] = ("c", (1, 0), 0, 0.3, None)
    assert [label for label, _ in synthesise((1, 0), make(rows), NOW_S, min_n=1).top] == ["b", "c"]


def test_zero_query_counts_every_packet_by_weight_and_recency() -> None:
    rows = [("a", (3, 4), 0, 1.0, None), ("b", (-3, -4), 0, 1.0, None), ("b", (0, 0), 100, 1.0, None)]
    s = synthesise((0, 0), make(rows), NOW_S, half_life_s=HALF, min_n=1)
    assert s.n == 3
    assert dict(s.top) == pytest.approx({"a": 1 / 2.5, "b": 1.5 / 2.5})


def test_zero_packet_vector_counts_nothing_against_a_real_query() -> None:
    rows = [("a", (0, 0), 0, 1.0, None), ("a", (0, 0), 1, 1.0, None), ("b", (1, 1), 0, 1.0, None)]
    s = synthesise((1, 1), make(rows), NOW_S, min_n=1)
    assert s.n == 1 and s.top == (("b", 1.0),)
    assert not synthesise((1, 1), make(rows[:2]), NOW_S, min_n=1).enough


def test_schema_without_continuous_fields() -> None:
    rows = [("a", (), 0, 1.0, 1.0), ("a", (), 0, 1.0, 3.0), ("b", (), 0, 0.5, None)]
    s = synthesise((), make(rows), NOW_S, half_life_s=None, min_n=2)
    assert s.enough and s.n == 3 and dict(s.top) == pytest.approx({"a": 0.8, "b": 0.2})
    assert s.mean_value == pytest.approx(2.0)


def test_single_packet() -> None:
    one = make([("ok", (1, 2), 0, 1.0, 7.0)])
    s = synthesise((1, 2), one, NOW_S, min_n=1)
    assert (s.enough, s.n, s.n_eff, s.top, s.mean_value) == (True, 1, 1.0, (("ok", 1.0),), 7.0)
    assert s.confidence == pytest.approx(1 / 4.8416)  # Wilson lower bound of 1/1: 1 / (1 + 1.96^2)
    # With the default guard a single event is never echoed back.
    guarded = synthesise((1, 2), one, NOW_S)
    assert (guarded.enough, guarded.top, guarded.mean_value, guarded.confidence) == (False, (), None, 0.0)


def test_all_negative_similarity_is_no_evidence() -> None:
    rows = [("a", (-1, -2), 0, 1.0, 5.0)] * 1 + [("b", (-2, -1), 0, 1.0, 5.0), ("c", (2, -1), 0, 1.0, None)]
    s = synthesise((1, 2), make(rows), NOW_S, min_n=1)
    assert s == Summary(False, 0, 0.0, (), 0.0, None)


def test_old_packets_decay_by_half_life() -> None:
    rows = [("old", (1, 0), 10 * 100, 1.0, None), ("new", (1, 0), 0, 1.0, None)]
    s = synthesise((1, 0), make(rows), NOW_S, half_life_s=100, min_n=1)
    assert dict(s.top) == pytest.approx({"new": 1 / (1 + 2**-10), "old": 2**-10 / (1 + 2**-10)})
    rows = [("old", (1, 0), 100, 1.0, None), ("new", (1, 0), 0, 1.0, None)]
    assert dict(synthesise((1, 0), make(rows), NOW_S, half_life_s=100, min_n=1).top)["old"] == pytest.approx(1 / 3)
    no_decay = synthesise((1, 0), make(rows), NOW_S, half_life_s=None, min_n=1)
    assert dict(no_decay.top) == pytest.approx({"old": 0.5, "new": 0.5})


def test_future_timestamps_count_as_now_not_more() -> None:
    rows = [("future", (1, 0), -10_000, 1.0, None), ("now", (1, 0), 0, 1.0, None)]
    s = synthesise((1, 0), make(rows), NOW_S, half_life_s=100, min_n=1)
    assert dict(s.top) == pytest.approx({"future": 0.5, "now": 0.5})


def test_mean_needs_enough_value_bearing_packets() -> None:
    rows = [("a", (1, 0), 0, 1.0, 9.0)] + [("a", (1, 0), age, 1.0, None) for age in (1, 2, 3)]
    s = synthesise((1, 0), make(rows), NOW_S, min_n=3)
    assert s.enough and s.mean_value is None  # one value would be echoed back otherwise


def test_duplicates_count_once_and_bad_parameters_are_refused() -> None:
    p = make([("a", (1, 0), 0, 1.0, None)])[0]
    columns = PacketColumns()
    assert columns.append(p) and not columns.append(p) and len(columns) == 1
    with pytest.raises(PacketError):
        columns.append(verified(vector=(1, 0, 0)))  # another dimension count
    with pytest.raises(ValueError, match="dimensions"):
        synthesise_columns((1, 0, 0), columns, NOW_S)
    for bad in ({"half_life_s": 0}, {"min_n": 0}, {"top": 0}):
        with pytest.raises(ValueError):
            synthesise_columns((1, 0), columns, NOW_S, **bad)
    assert synthesise((1, 0), [], NOW_S) == Summary(False, 0, 0.0, (), 0.0, None)


def test_columns_grow_past_their_capacity() -> None:
    rows = [("ab"[i % 2], (i % 7 - 3, 5), i, 1.0, float(i)) for i in range(300)]
    columns = PacketColumns(capacity=1)
    columns.extend(make(rows))
    assert len(columns) == 300 and columns.vectors.shape == (300, 2)
    assert summaries_agree(synthesise_columns((2, 5), columns, NOW_S, half_life_s=HALF),
                           synthesise_loop((2, 5), make(rows), NOW_S, half_life_s=HALF))  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_equals_the_per_packet_loop(seed: int) -> None:
    rng = random.Random(seed)
    dims = rng.choice([0, 1, 3, 8])
    rows = [(rng.choice("pqrs"), tuple(rng.randint(-127, 127) for _ in range(dims)), rng.randrange(-50, 5000),
             rng.choice([0.1, 0.5, 1.0]), rng.choice([None, rng.uniform(-5, 5)])) for _ in range(150)]  # fmt: skip
    packets = make(rows, key=rng.choice([KEY_A, KEY_B]))
    query = tuple(rng.randint(-127, 127) for _ in range(dims))
    for min_n in (1, 5, 60):
        fast = synthesise(query, packets, NOW_S, half_life_s=1000, min_n=min_n, top=4)
        slow = synthesise_loop(query, packets, NOW_S, half_life_s=1000, min_n=min_n, top=4)
        assert summaries_agree(fast, slow), (fast, slow)
