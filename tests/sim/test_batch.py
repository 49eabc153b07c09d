"""sim.batch.gemm_costs (the sweeps' many-designs kernel) against the cycle-stepping twin, row by row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_gemm_cycles

from sim.batch import CONFIG_COLUMNS, DATAFLOW_CODES, gemm_costs
from sim.errors import InputError

NAMES = {code: name for name, code in DATAFLOW_CODES.items()}

row = st.tuples(
    st.sampled_from(sorted(NAMES)),  # dataflow
    st.integers(1, 3),  # rows
    st.integers(1, 3),  # cols
    st.sampled_from([1, 2, 4]),  # lanes
    st.integers(1, 8),  # m
    st.integers(1, 8),  # n
    st.integers(1, 8),  # k
    st.integers(1, 2),  # count
    st.sampled_from([2, 4, 8]),  # act bits
    st.sampled_from([2, 4, 8]),  # weight bits
    st.sampled_from([4, 8]),  # out bits
    st.integers(1, 64),  # ifmap bytes
    st.integers(1, 64),  # filter bytes
    st.integers(1, 96),  # ofmap bytes
    st.sampled_from([0.25, 0.5, 1.0, 2.5, 16.0]),  # bytes per cycle
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=1, max_size=6))
def test_each_row_equals_the_cycle_stepping_twin(rows: list[tuple]) -> None:
    configs = np.array([r[:14] for r in rows], dtype=np.int64)
    bandwidth = np.array([r[14] for r in rows])
    got = gemm_costs(configs, bandwidth)
    for config, speed, result in zip(rows, bandwidth, got, strict=True):
        dataflow, *rest = config[:14]
        assert tuple(int(v) for v in result) == naive_gemm_cycles(NAMES[dataflow], *rest, float(speed))


def test_bad_rows_are_input_errors() -> None:
    good = np.array([[0, 2, 2, 1, 4, 4, 4, 1, 8, 8, 8, 64, 64, 64]], dtype=np.int64)
    assert gemm_costs(good, np.array([1.0])).shape == (1, 4)
    assert gemm_costs(np.zeros((0, len(CONFIG_COLUMNS)), np.int64), np.zeros(0)).shape == (0, 4)
    with pytest.raises(InputError, match="row 0: m=0"):
        gemm_costs(np.where(np.arange(14) == 4, 0, good), np.array([1.0]))
    with pytest.raises(InputError, match="dataflow"):
        gemm_costs(np.where(np.arange(14) == 0, 7, good), np.array([1.0]))
    with pytest.raises(InputError, match="bytes_per_cycle"):
        gemm_costs(good, np.array([0.0]))
    with pytest.raises(InputError, match="shape"):
        gemm_costs(good[:, :5], np.array([1.0]))
