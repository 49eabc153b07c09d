"""sim.batch.gemm_costs (the sweeps' many-designs kernel) against the cycle-stepping twin, row by row, and
fused_gemm_costs (fold pipelining and fused units) against ``simulate``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_gemm_cycles

from sim.batch import CONFIG_COLUMNS, DATAFLOW_CODES, fused_gemm_costs, gemm_costs, gemm_shapes
from sim.errors import InputError
from sim.pe import macs_per_pe
from sim.simulate import _fusion, simulate
from sim.target_file import load_target
from sim.workload import Gemm, VectorOp, Workload

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


def _fused_workload() -> Workload:
    """GEMMs of one shape with and without fused operators after them, a row-wise softmax, a lone add."""
    return Workload.from_ops(
        "fused",
        [
            Gemm("qk", "matmul_qk", 20, 20, 8, count=3),
            VectorOp("softmax", "softmax", 3 * 20 * 20, row=20),
            Gemm("fc1", "fc1", 20, 40, 12, weight_params=480),
            VectorOp("gelu", "gelu", 20 * 40),
            Gemm("proj", "proj", 20, 40, 12, weight_params=480),
            VectorOp("add", "add", 20 * 40),
            Gemm("fc2", "fc2", 20, 12, 40, weight_params=480),
        ],
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["zcu102", "kv260", "u250", "bitfusion_16x32"]),
    st.sampled_from(sorted(DATAFLOW_CODES)),
    st.integers(1, 12),
    st.integers(1, 12),
    st.sampled_from([(8, 8), (4, 8), (4, 4)]),
    st.integers(8, 4096),
    st.sampled_from([0.05, 0.5, 19.2]),
)
def test_fused_rows_equal_simulate(
    name: str, dataflow: str, rows: int, cols: int, bits: tuple[int, int], buffer_bytes: int, bandwidth: float
) -> None:
    """Each (GEMM, chain) row of ``fused_gemm_costs`` is what ``simulate`` reports for a GEMM of that row."""
    workload = _fused_workload()
    target = load_target(name).replace_array(rows=rows, cols=cols, dataflow=dataflow)
    acc = target.accelerator
    target = dataclasses.replace(
        target,
        memory=dataclasses.replace(target.memory, bandwidth_gbps=bandwidth),
        accelerator=dataclasses.replace(
            acc, buffers=dataclasses.replace(acc.buffers, ifmap_bytes=buffer_bytes, ofmap_bytes=2 * buffer_bytes)
        ),
    )
    shapes, multiplicity = gemm_shapes(workload, target)
    assert multiplicity.sum() == len(workload.gemms)
    lanes = macs_per_pe(target.accelerator.pe, *bits)
    b = target.accelerator.buffers
    configs = np.array(
        [
            [DATAFLOW_CODES[dataflow], rows, cols, lanes, m, n, k, count, bits[1], bits[0], bits[1],
             b.ifmap_bytes, b.filter_bytes, b.ofmap_bytes]
            for m, n, k, count, _ in shapes.tolist()
        ],
        dtype=np.int64,
    )  # fmt: skip
    got = fused_gemm_costs(configs, np.full(len(shapes), target.bytes_per_cycle), shapes[:, 4], workload, target)
    layers = {layer.name: layer for layer in simulate(workload, target, bits).layers}
    chain = _fusion(workload, target).chain_id
    for gemm in workload.gemms:
        j = [tuple(s) for s in shapes.tolist()].index((gemm.m, gemm.n, gemm.k, gemm.count, chain[gemm.name]))
        layer = layers[gemm.name]
        assert tuple(got[j].tolist()) == (
            layer.compute_cycles,
            layer.compute_cycles + layer.stall_cycles,
            layer.bytes_read,
            layer.bytes_written,
            layer.fused_cycles,
        ), gemm.name
    if target.accelerator.nonlinear.configured:  # fc1 (GELU fused) and proj (nothing fused) are two rows
        assert chain["fc1"] != chain["proj"] and len(shapes) == 4


def test_fused_rows_refuse_unknown_chains() -> None:
    workload = _fused_workload()
    target = load_target("zcu102")
    good = np.array([[0, 2, 2, 1, 4, 4, 4, 1, 8, 8, 8, 64, 64, 64]], dtype=np.int64)
    assert fused_gemm_costs(good, np.array([1.0]), np.array([0]), workload, target).shape == (1, 5)
    with pytest.raises(InputError, match="chain"):
        fused_gemm_costs(good, np.array([1.0]), np.array([99]), workload, target)
