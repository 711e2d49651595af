"""PacketColumns bulk and single appends agree; extend is all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.packets import PacketError

from packets.helpers import ADDRESS, NOW_S, OTHER_ADDRESS, packet, verified


def some(count: int, start: int = 0) -> list:
    return [
        verified(label="ab"[i % 2], vector=(i % 5 - 2, i % 3, 0), created_s=NOW_S - i,
                 value=None if i % 3 else float(i), weight=0.5 + (i % 2) / 2)
        for i in range(start, start + count)
    ]  # fmt: skip


def test_bulk_and_single_appends_give_the_same_columns() -> None:
    packets = some(40)
    bulk = PacketColumns.from_packets(packets, ADDRESS)
    single = PacketColumns(ADDRESS, capacity=1)
    for p in packets:
        single.append(p)
    for name in ("vectors", "inv_norm", "codes", "weights", "times"):
        assert np.array_equal(getattr(bulk, name), getattr(single, name)), name
    assert np.array_equal(bulk.values, single.values, equal_nan=True)
    assert bulk.labels == single.labels and bulk.packet_ids == single.packet_ids
    zero_rows = np.flatnonzero(~bulk.vectors.any(axis=1))
    assert len(zero_rows) and not bulk.inv_norm[zero_rows].any()


def test_extend_is_all_or_nothing_and_skips_duplicates() -> None:
    columns = PacketColumns(ADDRESS)
    packets = some(5)
    assert columns.extend(packets + packets[:2]) == 5
    for bad in ([*some(3, 10), packet()], [*some(3, 20), verified(address=OTHER_ADDRESS)],
                [*some(3, 30), verified(vector=(1, 2))], [*some(3, 40), "junk"]):  # fmt: skip
        with pytest.raises(PacketError):
            columns.extend(bad)
        assert len(columns) == 5
    assert columns.extend(some(3, 10)) == 3 and len(columns) == 8
