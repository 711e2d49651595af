"""The privacy-free upper bound: scikit-learn's HistGradientBoostingClassifier on the pooled raw rows.

How it works: trained on the history (the first 70% of the file, all sites pooled, raw numbers and the
derived ones the schema uses), scored on the rest. P(failure) comes from a binary model of `Machine
failure`; P(mode) from a second model of the outcome label ("PWF+OSF" counts for both modes).
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
    binary = HistGradientBoostingClassifier(categorical_features=[0], random_state=seed)
    binary.fit(x_train, np.array([r.failed for r in history], dtype=np.int8))
    p_fail = binary.predict_proba(x_test)[:, 1]
    labels = HistGradientBoostingClassifier(categorical_features=[0], random_state=seed)
    labels.fit(x_train, np.array([r.label for r in history]))
    p_labels = labels.predict_proba(x_test)
    classes = [str(c) for c in labels.classes_]
    out: dict[int, dict[str, float]] = {}
    for i, row in enumerate(scored):
        probs = {"failure": float(p_fail[i])}
        for mode in MODES:
            probs[mode] = float(sum(p_labels[i, j] for j, c in enumerate(classes) if mode in c.split("+")))
        out[row.index] = probs
    return out
