"""Golden simulated latencies per shipped target. A change that moves them must say why in its commit.

Workloads: three GEMMs of a DeiT-S block at 197 tokens (qkv, the 6-head q·kᵀ, fc2), and a block with its vector
operators (LayerNorm, softmax, GELU, residual add). Numbers are total cycles with DRAM stalls and with ideal memory,
at W8A8 and (where the target supports it) W4A4. The board targets use fold pipelining and fused nonlinear units
of their own (issue #16); bitfusion_16x32 and scalesim_32x32 keep SCALE-Sim timing and the generic lanes.
"""

from __future__ import annotations

import math

import pytest

import sim
from sim import Gemm, Workload
from sim.workload import VectorOp

# target -> {(wbits, abits): (cycles with stalls, cycles with ideal memory)}
GOLDEN: dict[str, dict[tuple[int, int], tuple[int, int]]] = {
    "bitfusion_16x32": {(8, 8): (891_843, 508_092), (4, 4): (366_384, 129_168)},
    "kv260": {(8, 8): (213_421, 211_096), (4, 4): (109_397, 107_528)},
    "pynq_z2": {(8, 8): (4_562_378, 4_561_999), (4, 4): (1_531_257, 1_530_908)},
    "scalesim_32x32": {(8, 8): (966_598, 283_668)},
    "u250": {(8, 8): (25_204, 22_425), (4, 4): (15_124, 13_342)},
    "u280": {(8, 8): (28_011, 27_612), (4, 4): (16_499, 16_199)},
    "ultra96v2": {(8, 8): (467_115, 454_556), (4, 4): (241_650, 239_379)},
    "vck190": {(8, 8): (100_190, 95_606), (4, 4): (52_869, 49_641)},
    "zcu102": {(8, 8): (105_098, 95_606), (4, 4): (55_192, 49_641)},
    "zcu104": {(8, 8): (116_584, 107_482), (4, 4): (61_242, 55_745)},
}

# The same block with its vector operators (LayerNorm before qkv, softmax after q·kᵀ, fc1 with GELU, residual
# add after fc2): on the board targets softmax/GELU/add are fused to the GEMM before them, LayerNorm is not.
GOLDEN_VECTOR: dict[str, dict[tuple[int, int], tuple[int, int]]] = {
    "bitfusion_16x32": {(8, 8): (1_790_620, 1_339_118), (4, 4): (1_097_186, 758_954)},
    "kv260": {(8, 8): (385_203, 382_596), (4, 4): (253_002, 251_191)},
    "pynq_z2": {(8, 8): (7_046_639, 7_046_124), (4, 4): (2_404_117, 2_403_622)},
    "scalesim_32x32": {(8, 8): (1_699_323, 714_877)},
    "u250": {(8, 8): (43_777, 40_538), (4, 4): (33_533, 31_709)},
    "u280": {(8, 8): (48_022, 47_556), (4, 4): (34_489, 34_191)},
    "ultra96v2": {(8, 8): (829_327, 814_807), (4, 4): (519_346, 517_071)},
    "vck190": {(8, 8): (161_518, 155_502), (4, 4): (92_291, 88_223)},
    "zcu102": {(8, 8): (168_378, 155_502), (4, 4): (95_688, 88_223)},
    "zcu104": {(8, 8): (204_413, 191_825), (4, 4): (131_434, 126_268)},
}


def deit_s_block() -> Workload:
    return Workload.from_ops(
        "deit_s_block",
        [
            Gemm("qkv", "qkv", 197, 1152, 384, weight_params=384 * 1152),
            Gemm("matmul_qk", "attn_qk", 197, 197, 64, b_is_weight=False, count=6),
            Gemm("fc2", "fc2", 197, 384, 1536, weight_params=1536 * 384),
        ],
    )


def deit_s_block_with_vector_ops() -> Workload:
    return Workload.from_ops(
        "deit_s_block_vector",
        [
            VectorOp("norm1", "layernorm", 197 * 384, row=384),
            Gemm("qkv", "qkv", 197, 1152, 384, weight_params=384 * 1152),
            Gemm("matmul_qk", "attn_qk", 197, 197, 64, b_is_weight=False, count=6),
            VectorOp("softmax", "softmax", 6 * 197 * 197, row=197),
            Gemm("fc1", "fc1", 197, 1536, 384, weight_params=384 * 1536),
            VectorOp("gelu", "gelu", 197 * 1536),
            Gemm("fc2", "fc2", 197, 384, 1536, weight_params=1536 * 384),
            VectorOp("residual", "add", 197 * 384),
        ],
    )


def test_every_shipped_target_has_golden_numbers() -> None:
    assert sorted(GOLDEN) == sorted(GOLDEN_VECTOR) == sim.list_targets()


def test_golden_targets_cover_the_dataflows_and_timing_modes() -> None:
    targets = [sim.load_target(name) for name in GOLDEN]
    assert {t.accelerator.dataflow for t in targets} >= {"os", "ws"}
    assert {t.accelerator.fold_pipelining for t in targets} == {True, False}
    assert any(t.accelerator.nonlinear.configured for t in targets)


@pytest.mark.parametrize("name", sorted(GOLDEN_VECTOR))
def test_golden_cycles_with_vector_operators(name: str) -> None:
    target = sim.load_target(name)
    for bits, (cycles, ideal_cycles) in GOLDEN_VECTOR[name].items():
        result = sim.simulate(deit_s_block_with_vector_ops(), target, bits)
        ideal = sim.simulate(deit_s_block_with_vector_ops(), target, bits, ideal_memory=True)
        assert (result.cycles, ideal.cycles) == (cycles, ideal_cycles), (name, bits)
        vector_rows = [layer for layer in result.layers if layer.m == 0]
        assert [layer.name for layer in vector_rows] == ["norm1", "softmax", "gelu", "residual"]
        # the result's layers still add up to the whole, fused tails included
        assert sum(layer.cycles for layer in result.layers) == result.cycles


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_cycles(name: str) -> None:
    target = sim.load_target(name)
    for bits, (cycles, ideal_cycles) in GOLDEN[name].items():
        result = sim.simulate(deit_s_block(), target, bits)
        ideal = sim.simulate(deit_s_block(), target, bits, ideal_memory=True)
        assert (result.cycles, ideal.cycles) == (cycles, ideal_cycles), (name, bits)
        assert result.latency_ms == pytest.approx(cycles / (target.clock_mhz * 1e3))
        assert result.fits


def test_scalesim_reference_is_the_closed_form() -> None:
    # SCALE-Sim's own default array: 32×32 OS, so ideal cycles are its closed form (without its minus 1)
    expected = sum(
        count * math.ceil(m / 32) * math.ceil(n / 32) * (k + 32 + 32 - 2)
        for m, n, k, count in ((197, 1152, 384, 1), (197, 197, 64, 6), (197, 384, 1536, 1))
    )
    assert GOLDEN["scalesim_32x32"][(8, 8)][1] == expected


# Input-stationary golden numbers: no shipped board builds an IS array, so zcu102's array is switched to IS
# (``Target.replace_array``, as ``mixbit simulate --dataflow is`` does); fold pipelining and fused units stay.
GOLDEN_IS: dict[str, dict[tuple[int, int], tuple[int, int]]] = {
    "deit_s_block": {(8, 8): (539_411, 125_078), (4, 4): (528_757, 85_469)},
    "deit_s_block_vector": {(8, 8): (1_167_453, 208_139), (4, 4): (1_153_680, 155_165)},
}


def test_golden_cycles_input_stationary() -> None:
    target = sim.load_target("zcu102").replace_array(dataflow="is")
    for workload in (deit_s_block, deit_s_block_with_vector_ops):
        for bits, (cycles, ideal_cycles) in GOLDEN_IS[workload().name].items():
            result = sim.simulate(workload(), target, bits)
            ideal = sim.simulate(workload(), target, bits, ideal_memory=True)
            assert (result.cycles, ideal.cycles) == (cycles, ideal_cycles), (workload().name, bits)
