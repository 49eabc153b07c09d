"""Pareto membership of sweep rows (allocator/sweep/pareto.py) against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from allocator.sweep.pareto import pareto_mask


def brute(values: np.ndarray) -> np.ndarray:
    n = len(values)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if (values[j] <= values[i]).all() and (values[j] < values[i]).any():
                out[i] = False
                break
    return out


@pytest.mark.parametrize("columns", [("latency_ms", "omega"), ("latency_ms", "omega", "dsp"),
                                     ("latency_ms", "energy_mj", "omega", "dsp")])  # fmt: skip
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_equals_brute_force_with_ties(columns: tuple[str, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    # few distinct values per objective, so ties and duplicates are common
    values = rng.integers(0, [40, 5, 12, 7][: len(columns)], size=(n, len(columns))).astype(float)
    frame = pd.DataFrame(values, columns=list(columns))
    assert (pareto_mask(frame) == brute(values)).all()


def test_rows_with_errors_or_nan_are_not_on_the_front() -> None:
    frame = pd.DataFrame(
        {"latency_ms": [1.0, 0.5, np.nan, 2.0], "omega": [1.0, 0.1, 0.0, 0.5], "dsp": [10, 1, 1, 5],
         "error": ["", "rejected", "", ""]}
    )  # fmt: skip
    assert pareto_mask(frame).tolist() == [True, False, False, True]
