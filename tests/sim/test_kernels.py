"""Every kernel of sim/kernels.py against its slow twin in tests/naive.py on many small random cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import (
    naive_fold_cycles,
    naive_functional_gemm,
    naive_gemm_cycles,
    naive_systolic_tile,
    naive_vector_cycles,
)

from sim import kernels

CODES = {"os": kernels.OS, "ws": kernels.WS, "is": kernels.IS}
DATAFLOWS = sorted(CODES)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_fold_cycles_equal_register_level_array(dataflow: str) -> None:
    for rows in (1, 2, 3, 5):
        for cols in (1, 2, 4):
            for stream in (1, 2, 7):
                expected = naive_fold_cycles(dataflow, rows, cols, stream)
                m = n = k = stream
                assert kernels._fold_cycles(CODES[dataflow], rows, cols, m, n, k) == expected


def test_fold_cycles_are_scalesim_closed_forms_without_minus_one() -> None:
    # OS K + R + C - 2, WS 2R + C + M - 2, IS 2R + C + N - 2 (DESIGN.md), found by moving operands PE by PE
    assert naive_fold_cycles("os", 3, 2, 5) == 5 + 3 + 2 - 2
    assert naive_fold_cycles("ws", 3, 2, 5) == 2 * 3 + 2 + 5 - 2
    assert naive_fold_cycles("is", 3, 2, 5) == 2 * 3 + 2 + 5 - 2


def test_register_level_tile_computes_products() -> None:
    a = [[1, 2], [3, 4], [5, 6]]  # 3×2
    b = [[1, 0, 2], [0, 1, 3]]  # 2×3
    out, _ = naive_systolic_tile("os", 4, 4, a, b)
    assert out == (np.array(a) @ np.array(b)).tolist()


gemm_case = st.fixed_dictionaries(
    {
        "dataflow": st.sampled_from(DATAFLOWS),
        "rows": st.integers(1, 3),
        "cols": st.integers(1, 3),
        "lanes": st.sampled_from([1, 2, 4]),
        "m": st.integers(1, 8),
        "n": st.integers(1, 8),
        "k": st.integers(1, 8),
        "count": st.integers(1, 2),
        "act_bits": st.sampled_from([2, 3, 4, 8]),
        "weight_bits": st.sampled_from([2, 4, 5, 8]),
        "out_bits": st.sampled_from([4, 8]),
        "ifmap_bytes": st.integers(1, 64),
        "filter_bytes": st.integers(1, 64),
        "ofmap_bytes": st.integers(1, 96),
        "bytes_per_cycle": st.sampled_from([0.25, 0.5, 1.0, 2.5, 3.0, 16.0]),
        "b_resident": st.booleans(),
    }
)


ARGS = ("rows", "cols", "lanes", "m", "n", "k", "count", "act_bits", "weight_bits", "out_bits")
ARGS += ("ifmap_bytes", "filter_bytes", "ofmap_bytes", "bytes_per_cycle")


def _kernel(case: dict) -> tuple[int, ...]:
    args = [case[key] for key in ARGS]
    resident = bool(case.get("b_resident", False))
    return tuple(int(v) for v in kernels._gemm_cycles(CODES[case["dataflow"]], *args, False, resident))


def _naive(case: dict) -> tuple[int, ...]:
    return naive_gemm_cycles(
        case["dataflow"], *[case[key] for key in ARGS], b_resident=bool(case.get("b_resident", False))
    )


@FAST
@given(gemm_case)
def test_gemm_timeline_equals_cycle_stepping_twin(case: dict) -> None:
    assert _kernel(case) == _naive(case)


def test_twin_cases_cover_stalls_reuse_and_spill() -> None:
    """The shapes above reach every memory regime: no stall, stalls, whole-operand reuse, partial-sum spill."""
    base = dict(rows=2, cols=2, lanes=1, m=6, n=6, k=6, count=1, act_bits=8, weight_bits=8, out_bits=8)
    roomy = dict(base, dataflow="ws", ifmap_bytes=64, filter_bytes=64, ofmap_bytes=96, bytes_per_cycle=16.0)
    tight = dict(roomy, ifmap_bytes=8, filter_bytes=4, ofmap_bytes=8, bytes_per_cycle=0.25)
    for case in (roomy, tight, dict(tight, dataflow="os"), dict(tight, dataflow="is")):
        assert _kernel(case) == _naive(case)
    compute, total, _, written = _kernel(tight)
    assert total > compute  # stalls
    assert written > 36  # 6×6 outputs at 8 bits = 36 bytes; spilled 32-bit partial sums add to it
    r_compute, _, r_read, _ = _kernel(roomy)
    assert r_read == 36 + 36  # both operands fit: each byte loaded once
    assert r_compute == compute
    resident = dict(roomy, b_resident=True)
    assert _kernel(resident) == _naive(resident)
    assert _kernel(resident)[2] == 36  # B already on chip: only A is read
    tight_resident = dict(tight, b_resident=True)  # B does not fit whole: the flag changes nothing
    assert _kernel(tight_resident) == _kernel(tight)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_ideal_memory_batch_is_compute_only(dataflow: str) -> None:
    shapes = np.array([[1, 5, 7, 3, 1, 8, 8, 8], [2, 4, 4, 9, 2, 4, 4, 4]], dtype=np.int64)
    ideal = kernels._gemm_cycles_many(CODES[dataflow], 2, 3, shapes, 10, 10, 10, 0.5, True)
    real = kernels._gemm_cycles_many(CODES[dataflow], 2, 3, shapes, 10, 10, 10, 0.5, False)
    for row, shape in enumerate(shapes):
        lanes, m, n, k, count = (int(v) for v in shape[:5])
        assert ideal[row, 0] == ideal[row, 1] == kernels._compute_cycles(CODES[dataflow], 2, 3, lanes, m, n, k, count)
        usable = kernels._usable_lanes(CODES[dataflow], 2, 3, lanes, m, n, k, 10)
        assert usable == (lanes if dataflow == "os" else 1)  # a 10-byte ofmap buffer holds no wider psum tile
        assert real[row, 0] == kernels._compute_cycles(CODES[dataflow], 2, 3, usable, m, n, k, count)
        assert real[row, 1] > real[row, 0]


@FAST
@given(st.integers(1, 500), st.integers(1, 20), st.integers(1, 64))
def test_vector_cycles_equal_lane_stepping(elements: int, ops: int, lanes: int) -> None:
    got = kernels._vector_cycles(np.array([elements]), np.array([ops]), lanes)
    assert int(got[0]) == naive_vector_cycles(elements, ops, lanes)


@FAST
@given(
    st.sampled_from(DATAFLOWS),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
)
def test_functional_kernel_equals_register_twin_and_numpy(
    dataflow: str, rows: int, cols: int, m: int, n: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int64)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int64)
    got = kernels._functional_gemm(a, b, rows, cols, CODES[dataflow])
    assert np.array_equal(got, a @ b)
    assert np.array_equal(naive_functional_gemm(a, b, rows, cols, dataflow).astype(np.int64), a @ b)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_fold_pipelining_pays_fill_and_drain_once(dataflow: str) -> None:
    # 100x70x40 on a 8x4 array, one lane: steady folds OS max(K, R) = 40, WS max(M, R) = 100, IS max(N, R) = 70
    code = CODES[dataflow]
    folds = {"os": 13 * 18, "ws": 18 * 5, "is": 25 * 5}[dataflow]
    steady = {"os": 40, "ws": 100, "is": 70}[dataflow]
    once = {"os": 8 + 4 - 2, "ws": 2 * 8 + 4 - 2, "is": 2 * 8 + 4 - 2}[dataflow]
    pipelined = kernels._compute_cycles(code, 8, 4, 1, 100, 70, 40, 1, True)
    scalesim = kernels._compute_cycles(code, 8, 4, 1, 100, 70, 40, 1, False)
    assert pipelined == folds * steady + once
    assert scalesim == folds * kernels._fold_cycles(code, 8, 4, 100, 70, 40)
    assert pipelined < scalesim
    shapes = np.array([[1, 100, 70, 40, 1, 8, 8, 8]], dtype=np.int64)
    ideal = kernels._gemm_cycles_many(code, 8, 4, shapes, 1, 1, 1, 1.0, True, True)
    assert ideal[0, 0] == ideal[0, 1] == pipelined
    # with memory, the pipelined compute term is the same closed form; stalls come on top
    real = kernels._gemm_cycles_many(code, 8, 4, shapes, 1 << 20, 1 << 20, 1 << 20, 1e6, False, True)
    assert real[0, 0] == pipelined and real[0, 1] >= pipelined
