"""The privacy-free upper bound: scikit-learn's HistGradientBoostingClassifier on the pooled raw rows.

How it works: trained on the history (the first 70% of the file, all sites pooled, raw numbers and the
derived ones the schema uses), scored on the rest. P(failure) comes from a binary model of `Machine
failure`; P(mode) from a binary model per mode (a row labelled "PWF+OSF" is positive for both).
scikit-learn is an optional dependency (the `bench` extra): without it `central_probabilities` returns
None and the caller reports that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qis_gateway.usefulness.data import MODES, NUMBERS, RAW_COLUMNS, Row

TYPES = {"L": 0, "M": 1, "H": 2}


def available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _features(rows: Sequence[Row], derived: bool) -> np.ndarray:
    numbers = NUMBERS if derived else tuple(RAW_COLUMNS)
    return np.array([[TYPES[r.reading["type"]]] + [r.reading[n] for n in numbers] for r in rows], dtype=np.float64)


def central_probabilities(history: Sequence[Row], scored: Sequence[Row], derived: bool = True,
                          seed: int = 0) -> dict[int, dict[str, float]] | None:
    """Row index -> {"failure": p, mode: p} for the scored rows; None without scikit-learn."""
    if not available():
        return None
    from sklearn.ensemble import HistGradientBoostingClassifier

    x_train, x_test = _features(history, derived), _features(scored, derived)
    def fit_predict(target: np.ndarray) -> np.ndarray:
        model = HistGradientBoostingClassifier(categorical_features=[0], random_state=seed)
        model.fit(x_train, target)
        return model.predict_proba(x_test)[:, 1]

    p_fail = fit_predict(np.array([r.failed for r in history], dtype=np.int8))
    # one binary model per mode: a multi-class model over the 12 labels (some seen once) overfits to 0/1
    p_modes = {mode: fit_predict(np.array([r.has_mode(mode) for r in history], dtype=np.int8)) for mode in MODES}
    out: dict[int, dict[str, float]] = {}
    for i, row in enumerate(scored):
        out[row.index] = {"failure": float(p_fail[i]), **{m: float(p_modes[m][i]) for m in MODES}}
    return out
