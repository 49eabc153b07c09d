"""Nonlinear units (sim/nonlinear.py): placement, fusion with the producing GEMM, row buffers, additivity."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_fused_pipeline_end

import sim
from sim import Gemm, VectorOp, Workload, kernels
from sim.errors import InputError
from sim.nonlinear import Nonlinear, NonlinearUnit, parse_nonlinear
from sim.simulate import VECTOR_OPS_PER_ELEMENT

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_units(target: sim.Target, units: dict[str, NonlinearUnit], lanes_depth: int = 0) -> sim.Target:
    nonlinear = Nonlinear(
        tuple(units.get(kind, NonlinearUnit(kind)) for kind in ("softmax", "gelu", "layernorm", "add", "requant")),
        lanes_depth,
        True,
    )
    acc = dataclasses.replace(target.accelerator, nonlinear=nonlinear)
    return dataclasses.replace(target, accelerator=acc)


def attention_block() -> Workload:
    """q·kᵀ of 3 heads over 50 tokens, its softmax, then a projection, residual add and LayerNorm."""
    return Workload.from_ops(
        "attn",
        [
            Gemm("qk", "attn_qk", 50, 50, 16, b_is_weight=False, count=3),
            VectorOp("softmax", "softmax", 3 * 50 * 50, 50),
            Gemm("av", "attn_av", 50, 16, 50, b_is_weight=False, count=3),
            Gemm("proj", "proj", 50, 48, 48, weight_params=48 * 48),
            VectorOp("add", "add", 50 * 48),
            VectorOp("norm", "layernorm", 50 * 48, 48),
        ],
    )


@FAST
@given(
    gemm_cycles=st.integers(1, 400),
    chunks=st.integers(1, 12),
    service=st.lists(st.integers(0, 60), min_size=1, max_size=4),
    depth_seed=st.integers(0, 10_000),
)
def test_fused_pipeline_equals_cycle_stepping_twin(
    gemm_cycles: int, chunks: int, service: list, depth_seed: int
) -> None:
    rng = np.random.default_rng(depth_seed)
    depth = [int(d) for d in rng.integers(0, 20, len(service))]
    expected = naive_fused_pipeline_end(gemm_cycles, chunks, service, depth)
    got = kernels._fused_pipeline_end(gemm_cycles, chunks, np.array(service, np.int64), np.array(depth, np.int64))
    assert got == expected


def test_output_chunks_follow_the_dataflow() -> None:
    # 50x50 output on a 8x4 array, 1 lane: OS finishes 7x13 tiles, rows once per 8-row block; WS rows at the end
    assert kernels._output_chunks(kernels.OS, 8, 4, 1, 50, 50, 16, 3, 0, False) == 3 * 7 * 13
    assert kernels._output_chunks(kernels.OS, 8, 4, 1, 50, 50, 16, 3, 0, True) == 3 * 7
    assert kernels._output_chunks(kernels.WS, 8, 4, 1, 50, 50, 16, 1, 0, True) == 1
    assert kernels._output_chunks(kernels.WS, 8, 4, 1, 50, 50, 16, 1, 0, False) == 13
    assert kernels._output_chunks(kernels.IS, 8, 4, 1, 50, 50, 16, 1, 0, True) == 13


def test_legacy_targets_keep_lanes_timing() -> None:
    target = sim.load_target("scalesim_32x32")
    result = sim.simulate(attention_block(), target, (8, 8))
    softmax = next(layer for layer in result.layers if layer.name == "softmax")
    lanes = target.accelerator.vector_lanes
    assert softmax.cycles == math.ceil(3 * 50 * 50 * VECTOR_OPS_PER_ELEMENT["softmax"] / lanes)
    assert softmax.unit == "lanes" and softmax.fused_into == ""
    assert all(layer.fused_cycles == 0 for layer in result.layers)


def test_fused_unit_hides_behind_its_gemm_and_only_the_tail_adds() -> None:
    base = sim.load_target("scalesim_32x32")
    own = NonlinearUnit("softmax", "own", True, 4.0, 10, 1000, 1000, 0, 64)
    fused = with_units(base, {"softmax": own})
    unfused = with_units(base, {"softmax": dataclasses.replace(own, fused=False)})
    workload = attention_block()
    a = sim.simulate(workload, fused, (8, 8))
    b = sim.simulate(workload, unfused, (8, 8))
    soft_a = next(layer for layer in a.layers if layer.name == "softmax")
    soft_b = next(layer for layer in b.layers if layer.name == "softmax")
    qk_a = next(layer for layer in a.layers if layer.name == "qk")
    # unfused: the unit's own time, ⌈7500 / 4⌉ + 10 cycles, after the GEMM
    assert soft_b.cycles == soft_b.busy_cycles == math.ceil(7500 / 4) + 10
    assert soft_a.cycles == 0 and soft_a.fused_into == "qk" and soft_a.busy_cycles == soft_b.busy_cycles
    assert 0 < qk_a.fused_cycles < soft_b.cycles
    assert qk_a.cycles == qk_a.compute_cycles + qk_a.stall_cycles + qk_a.fused_cycles
    assert a.cycles < b.cycles
    assert a.cycles == sum(layer.cycles for layer in a.layers)


def test_row_longer_than_the_row_buffer_costs_a_second_pass() -> None:
    base = sim.load_target("scalesim_32x32")
    short = NonlinearUnit("softmax", "own", False, 2.0, 0, 0, 0, 0, 32)  # rows of 50 > 32
    long = dataclasses.replace(short, row_buffer_elements=64)
    one = sim.simulate(attention_block(), with_units(base, {"softmax": long}), (8, 8))
    two = sim.simulate(attention_block(), with_units(base, {"softmax": short}), (8, 8))
    cycles = {r.name: r.cycles for r in one.layers}["softmax"], {r.name: r.cycles for r in two.layers}["softmax"]
    assert cycles == (7500 // 2, 7500)


def test_lanes_stages_share_the_lanes_and_requant_is_implicit() -> None:
    base = sim.load_target("scalesim_32x32")
    lanes_fused = {kind: NonlinearUnit(kind, "lanes", True) for kind in ("add", "layernorm", "requant")}
    target = with_units(base, lanes_fused, lanes_depth=3)
    result = sim.simulate(attention_block(), target, (8, 8))
    by_name = {layer.name: layer for layer in result.layers}
    assert by_name["add"].fused_into == "proj" and by_name["norm"].fused_into == "proj"
    # every GEMM requantizes its output on the lanes: qk and av have a tail although nothing else fuses to them
    assert by_name["qk"].fused_cycles > 0 and by_name["av"].fused_cycles > 0


@pytest.mark.parametrize("name", ["scalesim_32x32", "zcu102", "kv260"])
def test_cost_table_plus_unfused_vector_cycles_is_the_whole_model(name: str) -> None:
    base = sim.load_target(name)
    units = {
        "softmax": NonlinearUnit("softmax", "own", True, 8.0, 12, 0, 0, 0, 256),
        "add": NonlinearUnit("add", "lanes", True),
        "layernorm": NonlinearUnit("layernorm", "own", False, 4.0, 20, 0, 0, 0, 64),
        "requant": NonlinearUnit("requant", "own", True, 16.0, 4),
    }
    target = with_units(base, units)
    workload = attention_block()
    pairs = [(8, 8), (4, 4)] if target.supports(4, 4) else [(8, 8)]
    table = sim.cost_table(workload, target, pairs)
    fixed = sim.vector_cycles(workload, target)
    for plan in ({"qk": pairs[-1], "av": pairs[0], "proj": pairs[-1]}, pairs[0]):
        result = sim.simulate(workload, target, plan)
        chosen = plan if isinstance(plan, dict) else dict.fromkeys(("qk", "av", "proj"), plan)
        rows = [table[(table.name == n) & (table.wbits == w) & (table.abits == a)] for n, (w, a) in chosen.items()]
        assert fixed + sum(int(r.cycles.iloc[0]) for r in rows) == result.cycles
        assert sim.vector_energy_mj(workload, target) + sum(float(r.energy_mj.iloc[0]) for r in rows) == (
            pytest.approx(result.energy_mj)
        )


def test_parse_nonlinear_reads_units_and_names_bad_keys() -> None:
    table = {
        "lanes_pipeline_depth": 4,
        "source": "assumption: test",
        "softmax": {
            "placement": "own", "elements_per_cycle": 8, "pipeline_depth": 30, "fused": True, "lut": 100,
            "row_buffer_elements": 256, "source": "assumption: test",
        },
        "gelu": {"placement": "lanes", "fused": True, "source": "assumption: test"},
    }  # fmt: skip
    nonlinear = parse_nonlinear(table, "t.toml: accelerator.nonlinear")
    assert nonlinear.configured and nonlinear.lanes_pipeline_depth == 4
    assert nonlinear.unit("softmax").elements_per_cycle == 8.0 and nonlinear.unit("softmax").row_wise
    assert nonlinear.unit("gelu").fused and nonlinear.unit("add") == NonlinearUnit("add")
    bad_cases = [
        ({"softmax": {"placement": "own", "source": "x"}}, "softmax.elements_per_cycle"),
        ({"softmax": {"placement": "own", "elements_per_cycle": 4, "source": "x"}}, "softmax.row_buffer_elements"),
        ({"gelu": {"placement": "lanes", "lut": 4, "source": "x"}}, "gelu.lut"),
        ({"gelu": {"placement": "fpga", "source": "x"}}, "gelu.placement"),
        ({"gelu": {"placement": "lanes"}}, "gelu.source"),
        ({"tanh": {}}, "tanh"),
        ({"add": {"placement": "own", "elements_per_cycle": 4, "row_buffer_elements": 8, "source": "x"}}, "add.row"),
    ]
    for raw, key in bad_cases:
        with pytest.raises(InputError, match=f"accelerator.nonlinear.{key}"):
            parse_nonlinear(raw, "t.toml: accelerator.nonlinear")


def test_own_units_cost_resources_and_row_buffers_take_bram() -> None:
    base = sim.load_target("zcu102")
    unit = NonlinearUnit("softmax", "own", True, 8.0, 30, 5000, 6000, 12, 256)
    target = with_units(base, {"softmax": unit})
    part = {p.component: p for p in sim.estimate_resources(target).breakdown}["nonlinear_units"]
    # double-buffered 256 x 32-bit rows = 16,384 bits -> 1 BRAM36; 8 x 32-bit port = 256 bits -> 4 BRAM36 wide
    assert (part.lut, part.ff, part.dsp, part.bram36) == (5000, 6000, 12, 4)
    # a target file without [accelerator.nonlinear] (the Bit Fusion reference) has no units of its own
    legacy = {p.component: p for p in sim.estimate_resources(sim.load_target("bitfusion_16x32")).breakdown}[
        "nonlinear_units"
    ]
    assert (legacy.lut, legacy.dsp, legacy.bram36) == (0, 0, 0)
