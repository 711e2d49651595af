"""The AI4I board schema, with band edges taken from the history's own quantiles.

How it works: a `Design` names the categorical fields (the machine type plus bands of some of the
numbers in data.NUMBERS), the quantiles at which each banded number is cut, the continuous vector's
numbers and the coarser levels. `build_schema(history, design)` turns it into the schema JSON a user
would write: each band edge is the given quantile of that number over the history rows (the first 70%
of the file, never the scored rows), rounded to 3 significant figures; the vector's centre and scale are
the history's median and standard deviation. No edge comes from the dataset's published failure rules.
`DESIGN` is the design chosen on the tuning seeds (docs/usefulness.md); ai4i.json is its output, and a
test checks that rebuilding gives the same file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qis_gateway.usefulness.data import Row, load_rows, train_cut

SCHEMA_ID = "ai4i-milling/1"


@dataclass(frozen=True)
class Design:
    bands: dict[str, tuple[float, ...]]  # number -> quantiles (0..1) where its bands are cut
    vector: tuple[str, ...]  # numbers in the continuous vector
    coarser: tuple[tuple[str, ...], ...]  # field names per coarser level, finest first
    with_type: bool = True
    names: dict[str, str] = field(default_factory=dict)


def band_field(number: str) -> str:
    return number.split("_")[0] + "_band"


# Power and strain failures sit in the far tails, so the tails are cut finely (0.5% to 99.5%): a tail
# band then holds ~35 history rows over all sites but ~4 at one site, too few for min_n alone; pooling
# is what fills it (tuning sweep: PR-AUC 0.66 with 2-98% tails, 0.74 with these).
TAILS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995)
# The exact level holds every field; the coarser "levels" are views (the gateway's level_policy "max"
# consults them all): strain per product type, temperature difference with speed, power, tool wear.
DESIGN = Design(
    bands={"power_w": TAILS, "strain_nm_min": TAILS, "dtemp_k": (0.1, 0.5), "speed_rpm": (0.1, 0.5),
           "wear_min": (0.5, 0.8, 0.9, 0.95)},
    vector=("dtemp_k", "speed_rpm", "torque_nm", "wear_min", "power_w", "strain_nm_min"),
    coarser=(("type", "strain_band"), ("dtemp_band", "speed_band"), ("power_band",), ("wear_band",)),
)


def _sig3(x: float) -> float:
    return float("%.3g" % x)


def build_schema(history: list[Row], design: Design = DESIGN) -> dict[str, Any]:
    """The schema JSON (as a dict) for `design`, its numbers cut at the history's quantiles."""
    categorical: list[dict[str, Any]] = []
    if design.with_type:
        categorical.append({"name": "type", "kind": "label", "input": "type", "labels": ["L", "M", "H"]})
    for number, quantiles in design.bands.items():
        values = np.array([r.reading[number] for r in history], dtype=np.float64)
        edges: list[float] = []
        for q in quantiles:
            edge = _sig3(float(np.quantile(values, q)))
            if not edges or edge > edges[-1]:
                edges.append(edge)
        labels = ["b%d" % i for i in range(len(edges) + 1)]
        categorical.append({"name": band_field(number), "kind": "bands", "input": number, "edges": edges,
                            "labels": labels})
    continuous = []
    for number in design.vector:
        values = np.array([r.reading[number] for r in history], dtype=np.float64)
        continuous.append({"name": number, "input": number, "center": _sig3(float(np.median(values))),
                           "scale": _sig3(float(values.std()))})
    return {
        "schema_id": SCHEMA_ID,
        "description": "AI4I 2020 milling machine (qis-edge usefulness replay): product type, bands of derived "
                       "power, tool strain, temperature difference, speed and tool wear cut at quantiles of the "
                       "history; continuous measured and derived numbers.",
        "categorical": categorical,
        "continuous": continuous,
        "coarser": [list(level) for level in design.coarser],
    }


def schema_path() -> Path:
    return Path(str(resources.files("qis_gateway.usefulness").joinpath("ai4i.json")))


def packaged_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text())


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1) + "\n"


def main() -> None:  # pragma: no cover - regenerates ai4i.json
    rows = load_rows()
    schema_path().write_text(schema_text(build_schema(rows[:train_cut(len(rows))])))


if __name__ == "__main__":  # pragma: no cover
    main()
