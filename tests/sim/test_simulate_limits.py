"""sim/simulate.py's guards (issue #15 items 4, 5, 7): counts that would overflow int64 are refused, never
wrapped; a near-zero bandwidth is refused or gives huge stalls, never zero; a GEMM too big to step through fold by
fold is refused up front, quickly, while its closed form (ideal memory) still works."""

from __future__ import annotations

import dataclasses
import time

import pytest

from sim import Workload, load_target, simulate
from sim.errors import InputError
from sim.nonlinear import Nonlinear
from sim.simulate import INT64_MAX, MAX_EVENT_FOLDS, cost_table
from sim.workload import Gemm, VectorOp


@pytest.fixture(scope="module")
def zcu102():
    # the hand-computed counts below are SCALE-Sim's closed forms: zcu102's array with the legacy timing
    # (no fold pipelining, no nonlinear units; the shipped file has both since issue #16)
    target = load_target("zcu102")
    acc = dataclasses.replace(target.accelerator, fold_pipelining=False, nonlinear=Nonlinear())
    return dataclasses.replace(target, accelerator=acc)


def test_huge_gemm_on_the_shipped_fused_target_is_quick() -> None:
    # the fused requantization's pipeline is a closed form (sim/kernels.py), not a walk over 10^12 output tiles
    began = time.perf_counter()
    result = simulate(Workload.from_gemm(28 * 10**6, 96 * 10**6, 9 * 10**6), load_target("zcu102"), ideal_memory=True)
    assert time.perf_counter() - began < 5
    assert 0 < result.cycles < INT64_MAX and result.layers[0].fused_cycles > 0


def with_bandwidth(target, gbps: float):
    return dataclasses.replace(target, memory=dataclasses.replace(target.memory, bandwidth_gbps=gbps))


@pytest.mark.parametrize("dim", [1_000_000_000, 3_000_000_000])
def test_int64_overflow_is_refused_not_wrapped(zcu102, dim: int) -> None:
    # the true count (about 7.4e23 cycles at 1e9 on the 28x48 array) passes int64; it used to come back wrapped
    with pytest.raises(InputError, match="beyond the simulator's 64-bit cycle counters"):
        simulate(Workload.from_gemm(dim, dim, dim), zcu102, ideal_memory=True)


def test_largest_counts_below_int64_are_exact(zcu102) -> None:
    # OS on 28x48 with 2 INT8 products per DSP (96 wide): ceil(M/28)·ceil(N/96)·(K + 74); computed by hand
    m, n, k = 28 * 10**6, 96 * 10**6, 9 * 10**6
    result = simulate(Workload.from_gemm(m, n, k), zcu102, ideal_memory=True)
    assert result.cycles == 10**6 * 10**6 * (9 * 10**6 + 74) == 9_000_074_000_000_000_000
    assert result.cycles < INT64_MAX


def test_count_is_part_of_the_bound(zcu102) -> None:
    gemm = Gemm("heads", "attn_qk", 28 * 10**6, 96 * 10**6, 9 * 10**6, b_is_weight=False, count=2)
    with pytest.raises(InputError, match=r"'heads'.*2 times.*64-bit"):
        simulate(Workload.from_ops("w", [gemm]), zcu102, ideal_memory=True)


def test_huge_gemm_is_refused_up_front_and_quickly(zcu102) -> None:
    began = time.perf_counter()
    with pytest.raises(InputError, match=r"folds in all.*--ideal-memory"):
        simulate(Workload.from_gemm(100_000_000, 100_000_000, 1), zcu102)
    assert time.perf_counter() - began < 5  # it used to run past 60 s, deaf to Ctrl-C
    closed_form = simulate(Workload.from_gemm(100_000_000, 100_000_000, 1), zcu102, ideal_memory=True)
    assert closed_form.cycles == 3_571_429 * 1_041_667 * 75  # ceil(1e8/28)·ceil(1e8/96)·(1 + 28 + 48 − 2)


def test_fold_cap_counts_every_distinct_shape(zcu102) -> None:
    m, n = 28 * 12_000, 48 * 12_000  # 1.44e8 folds each on 28x48 OS: either alone passes, both do not
    assert (m // 28) * (n // 48) < MAX_EVENT_FOLDS < 2 * (m // 28) * (n // 48)
    ops = [Gemm("a", "gemm", m, n, 1, weight_params=n), Gemm("b", "gemm", m, n, 2, weight_params=2 * n)]
    with pytest.raises(InputError, match="'b'"):
        cost_table(Workload.from_ops("two", ops), zcu102, [(8, 8)])


@pytest.mark.parametrize("gbps", [1e-300, 0.0])
def test_near_zero_bandwidth_never_gives_zero_stalls(zcu102, gbps: float) -> None:
    target = with_bandwidth(zcu102, gbps)
    with pytest.raises(InputError, match=r"bandwidth_gbps|bytes per cycle"):
        simulate(Workload.from_gemm(64, 64, 64), target)


def test_low_bandwidth_gives_large_exact_stalls(zcu102) -> None:
    gemm = Workload.from_gemm(64, 64, 64)
    fast = simulate(gemm, zcu102)
    slow = simulate(gemm, with_bandwidth(zcu102, 1e-6))
    assert slow.stall_cycles > 1000 * fast.stall_cycles > 0
    # 12,288 bytes read + 4,096 written at 1e-6 GB/s and 300 MHz = 1/300 bytes per cycle, one transfer at a time
    assert slow.cycles >= (slow.bytes_read + slow.bytes_written) * 300


def test_infinite_bandwidth_is_refused(zcu102) -> None:
    with pytest.raises(InputError, match="bytes per cycle"):
        simulate(Workload.from_gemm(64, 64, 64), with_bandwidth(zcu102, float("inf")))


def test_array_override_bound(zcu102) -> None:
    with pytest.raises(InputError, match="--rows: at most 4096"):
        simulate(Workload.from_gemm(8, 8, 8), zcu102, rows=100_000)


def test_vector_operator_overflow_is_refused(zcu102) -> None:
    ops = [Gemm("g", "gemm", 8, 8, 8, weight_params=64), VectorOp("sm", "softmax", 10**18)]
    with pytest.raises(InputError, match=r"'sm'.*64-bit"):
        simulate(Workload.from_ops("w", ops), zcu102)
