"""Functional mode: integer codes pushed through the array fold by fold equal an exact integer matmul."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import InputError, functional_gemm

DATAFLOWS = ["os", "ws", "is"]


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_equals_numpy_integer_matmul(dataflow: str, dtype: type) -> None:
    rng = np.random.default_rng(7)
    bound = min(np.iinfo(dtype).max, 2**24)  # int32 codes of 25 bits: 70-term sums still fit int64
    a = rng.integers(-bound, bound, size=(37, 70), endpoint=True).astype(dtype)
    b = rng.integers(-bound, bound, size=(70, 29), endpoint=True).astype(dtype)
    got = functional_gemm(a, b, 8, 6, dataflow)
    assert got.dtype == np.int64
    assert np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64))


def test_int8_k1536_exceeds_float32_yet_stays_exact() -> None:
    # DESIGN.md: int8×int8 sums over K=1536 reach 2.5e7 > 2^24, beyond float32's exact integers
    a = np.full((4, 1536), -128, dtype=np.int8)
    b = np.full((1536, 4), -128, dtype=np.int8)
    got = functional_gemm(a, b, 16, 16, "ws")
    assert (got == 1536 * 128 * 128).all()
    assert 1536 * 128 * 128 > 2**24


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(DATAFLOWS),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 20),
    st.integers(1, 20),
    st.integers(1, 20),
    st.sampled_from([2, 4, 8]),
    st.integers(0, 2**31 - 1),
)
def test_random_shapes_and_bits(
    dataflow: str, rows: int, cols: int, m: int, n: int, k: int, bits: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    a = rng.integers(lo, hi, size=(m, k), endpoint=True).astype(np.int8)
    b = rng.integers(lo, hi, size=(k, n), endpoint=True).astype(np.int8)
    assert np.array_equal(functional_gemm(a, b, rows, cols, dataflow), a.astype(np.int64) @ b.astype(np.int64))


def test_bad_input() -> None:
    a = np.ones((3, 4), dtype=np.int8)
    with pytest.raises(InputError, match="inner dimensions"):
        functional_gemm(a, np.ones((5, 2), dtype=np.int8), 4, 4, "os")
    with pytest.raises(InputError, match="float32"):
        functional_gemm(a.astype(np.float32), np.ones((4, 2), dtype=np.int8), 4, 4, "os")
    with pytest.raises(InputError, match="int64"):
        functional_gemm(a.astype(np.int64), np.ones((4, 2), dtype=np.int8), 4, 4, "os")
    big = np.full((2, 4), 2**31 - 1, dtype=np.int32)
    with pytest.raises(InputError, match="overflow"):
        functional_gemm(big, big.T.copy(), 4, 4, "os")
    with pytest.raises(InputError, match="dataflow 'rs'"):
        functional_gemm(a, np.ones((4, 2), dtype=np.int8), 4, 4, "rs")
    with pytest.raises(InputError, match="rows=0"):
        functional_gemm(a, np.ones((4, 2), dtype=np.int8), 0, 4, "os")
    with pytest.raises(InputError, match="empty"):
        functional_gemm(np.ones((0, 4), dtype=np.int8), np.ones((4, 2), dtype=np.int8), 4, 4, "os")
