"""The AI4I 2020 rows as a board would read them, their true outcomes, and the seeded split over sites.

How it works: `load_rows()` reads the packaged CSV (data/README.md: source and licence) in file order,
which is the replay's time order. Each row becomes the reading a board's sensor driver would hand to
`Schema.fingerprint`: the machine type, the five measured numbers and three quantities a driver derives
from them (temperature difference, mechanical power, tool strain = wear x torque). Its outcome label is
`none` when `Machine failure` is 0, else the failure modes flagged on the row joined by "+" (e.g. "HDF",
"PWF+OSF"), or "other" for the 9 failures with no mode flagged. `split_sites` assigns rows to sites
with a seeded draw and keeps each site's rows in file order.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")
NONE = "none"
TRAIN_SHARE = 0.7  # the first 70% of rows: history (band edges, the central model); the last 30% is scored

# reading keys (the schema's inputs) -> CSV column
RAW_COLUMNS = {
    "air_k": "Air temperature [K]",
    "process_k": "Process temperature [K]",
    "speed_rpm": "Rotational speed [rpm]",
    "torque_nm": "Torque [Nm]",
    "wear_min": "Tool wear [min]",
}
DERIVED = ("dtemp_k", "power_w", "strain_nm_min")
NUMBERS = tuple(RAW_COLUMNS) + DERIVED


@dataclass(frozen=True, slots=True)
class Row:
    index: int  # 0-based position in the file: the replay's time
    reading: dict[str, Any]  # what the board's sensor driver reports (schema inputs)
    label: str  # the true outcome: "none", a mode, modes joined by "+", or "other"
    failed: bool  # `Machine failure`

    def has_mode(self, mode: str) -> bool:
        return mode in self.label.split("+")


def data_path() -> Path:
    return Path(str(resources.files("qis_gateway.usefulness").joinpath("data", "ai4i2020.csv")))


def derive(reading: dict[str, Any]) -> dict[str, Any]:
    """Add the derived quantities a board's driver computes from its measurements (in place; returned)."""
    reading["dtemp_k"] = round(reading["process_k"] - reading["air_k"], 3)
    reading["power_w"] = round(reading["torque_nm"] * reading["speed_rpm"] * 2.0 * math.pi / 60.0, 3)
    reading["strain_nm_min"] = round(reading["wear_min"] * reading["torque_nm"], 3)
    return reading


def _label(rec: dict[str, str]) -> str:
    if rec["Machine failure"] != "1":
        return NONE
    modes = [m for m in MODES if rec[m] == "1"]
    return "+".join(modes) if modes else "other"


def load_rows(path: Path | None = None) -> list[Row]:
    """Every row of the CSV in file order; ValueError naming the line for a malformed one."""
    source = path or data_path()
    rows: list[Row] = []
    with open(source, newline="") as f:
        for n, rec in enumerate(csv.DictReader(f), start=2):
            try:
                reading: dict[str, Any] = {"type": rec["Type"]}
                for key, column in RAW_COLUMNS.items():
                    reading[key] = float(rec[column])
                rows.append(Row(len(rows), derive(reading), _label(rec), rec["Machine failure"] == "1"))
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError("%s line %d: not an AI4I row (%s)" % (source, n, exc)) from exc
    if not rows:
        raise ValueError("%s: no rows" % source)
    return rows


def split_sites(rows: list[Row], sites: int, seed: int) -> list[list[Row]]:
    """Rows assigned to `sites` sites by a seeded uniform draw; each site's rows keep file order."""
    if sites < 1:
        raise ValueError("sites must be at least 1")
    rng = random.Random(seed)
    out: list[list[Row]] = [[] for _ in range(sites)]
    for row in rows:
        out[rng.randrange(sites)].append(row)
    return out


def train_cut(n_rows: int) -> int:
    """Index of the first scored row: rows before it are history (70/30 split in time order)."""
    return int(round(n_rows * TRAIN_SHARE))
