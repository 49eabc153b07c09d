"""The ILP's input table: costs per layer and bit choice from a cost table, validation, ties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from allocator.ilp.problem import (
    BRAM36_BITS,
    URAM_BITS,
    Problem,
    Tie,
    build_problem,
    onchip_capacity_bits,
)
from sim.errors import InputError
from sim.target import Accelerator, Buffers, Caps, Device, Memory, Target
from sim.workload import Gemm, VectorOp, Workload

BIT_PAIRS = [(w, a) for w in (2, 4, 8) for a in (4, 8)]


def fake_target() -> Target:
    """A small board-like target built in code (the shipped TOML loader is another engineer's)."""
    return Target(
        name="fake",
        description="test target",
        path=Path("fake.toml"),
        clock_mhz=200.0,
        device=Device(part="test", lut=100_000, ff=200_000, dsp=500, bram36=100, uram=10),
        caps=Caps(lut=0.7, ff=0.5, dsp=0.8, bram36=0.8, uram=0.8),
        memory=Memory(kind="ddr4", bandwidth_gbps=4.0),
        accelerator=Accelerator(
            rows=8,
            cols=8,
            dataflow="os",
            pe="bitfusion",
            weight_bits=(2, 4, 8),
            act_bits=(4, 8),
            buffers=Buffers(ifmap_bytes=16_384, filter_bytes=16_384, ofmap_bytes=8_192),
            vector_lanes=8,
        ),
        sources=(),
    )


def tiny_vit(depth: int = 1, tokens: int = 17, dim: int = 16, heads: int = 2) -> Workload:
    """GEMMs and vector ops of a small ViT, attention matmuls counted once per head."""
    head_dim = dim // heads
    ops: list[Gemm | VectorOp] = [Gemm("patch_embed.proj", "patch_embed", tokens - 1, dim, 16, weight_params=16 * dim)]
    for b in range(depth):
        p = f"blocks.{b}"
        ops += [
            VectorOp(f"{p}.norm1", "layernorm", tokens * dim),
            Gemm(f"{p}.attn.qkv", "qkv", tokens, 3 * dim, dim, weight_params=3 * dim * dim),
            Gemm(f"{p}.attn.matmul_qk", "attn_qk", tokens, tokens, head_dim, b_is_weight=False, count=heads),
            VectorOp(f"{p}.attn.softmax", "softmax", heads * tokens * tokens),
            Gemm(f"{p}.attn.matmul_av", "attn_av", tokens, head_dim, tokens, b_is_weight=False, count=heads),
            Gemm(f"{p}.attn.proj", "proj", tokens, dim, dim, weight_params=dim * dim),
            Gemm(f"{p}.mlp.fc1", "fc1", tokens, 2 * dim, dim, weight_params=2 * dim * dim),
            VectorOp(f"{p}.mlp.act", "gelu", tokens * 2 * dim),
            Gemm(f"{p}.mlp.fc2", "fc2", tokens, dim, 2 * dim, weight_params=2 * dim * dim),
        ]
    ops.append(Gemm("head", "head", 1, 10, dim, weight_params=10 * dim))
    return Workload.from_ops("tiny_vit", ops)


def fake_cost_table(workload: Workload, target: Target, bit_pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """sim.cost_table's columns from closed forms: output-stationary tiles on Bit Fusion PEs, plus the time to
    stream operands at the target's bandwidth beyond the compute time (a stand-in for the simulator)."""
    rows, cols = target.accelerator.rows, target.accelerator.cols
    out = []
    for g in workload.gemms:
        for wbits, abits in bit_pairs:
            per_cycle = (8 // max(abits, 2)) * (8 // max(wbits, 2))
            compute = math.ceil(g.m / rows) * math.ceil(g.n / cols) * (math.ceil(g.k / per_cycle) + rows + cols - 2)
            compute *= g.count
            moved = g.count * (g.k * g.n * wbits + g.m * g.k * abits) / 8
            stall = max(0, math.ceil(moved / target.bytes_per_cycle) - compute)
            out.append(
                {
                    "name": g.name,
                    "kind": g.kind,
                    "wbits": wbits,
                    "abits": abits,
                    "m": g.m,
                    "n": g.n,
                    "k": g.k,
                    "count": g.count,
                    "macs": g.macs,
                    "weight_params": g.weight_params,
                    "compute_cycles": compute,
                    "stall_cycles": stall,
                    "cycles": compute + stall,
                }
            )
    return pd.DataFrame(out)


def sensitivity_table(workload: Workload, bit_pairs: list[tuple[int, int]], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in workload.gemms:
        trace = rng.random()
        for wbits, abits in bit_pairs:
            rows.append(
                {"layer": g.name, "wbits": wbits, "abits": abits, "sensitivity": trace * 4.0 ** -min(wbits, abits)}
            )
    return pd.DataFrame(rows)


def fake_problem(workload: Workload | None = None, **kwargs) -> Problem:
    workload = workload or tiny_vit()
    target = fake_target()
    return build_problem(
        workload,
        target,
        sensitivity_table(workload, BIT_PAIRS),
        BIT_PAIRS,
        cost_table=fake_cost_table(workload, target, BIT_PAIRS),
        vector_cycles=1234,
        **kwargs,
    )


def test_build_problem_costs_per_layer_and_bits() -> None:
    workload = tiny_vit(depth=2)
    problem = fake_problem(workload)
    gemms = {g.name: g for g in workload.gemms}
    assert problem.layers == tuple(gemms)
    assert len(problem) == len(gemms) * len(BIT_PAIRS)
    assert problem.fixed_cycles == 1234
    assert problem.clock_mhz == 200.0
    assert problem.model == "tiny_vit"
    costs = fake_cost_table(workload, fake_target(), BIT_PAIRS).set_index(["name", "wbits", "abits"])
    frame = problem.to_frame()
    for row in frame.itertuples(index=False):
        g = gemms[row.layer]
        assert row.size_bits == g.weight_params * row.wbits
        assert row.onchip_bits == row.size_bits
        assert row.bops == g.macs * row.wbits * row.abits
        assert row.latency_cycles == costs.loc[(row.layer, row.wbits, row.abits), "cycles"]
    attention = frame[frame["layer"].str.endswith(("matmul_qk", "matmul_av"))]
    assert len(attention) == 2 * 2 * len(BIT_PAIRS)
    assert (attention["size_bits"] == 0).all() and (attention["bops"] > 0).all()


def test_bit_pairs_default_to_the_targets_and_filter_the_cost_table() -> None:
    workload, target = tiny_vit(), fake_target()
    costs = fake_cost_table(workload, target, [*BIT_PAIRS, (3, 3)])
    scores = sensitivity_table(workload, [*BIT_PAIRS, (3, 3)])
    problem = build_problem(workload, target, scores, cost_table=costs, vector_cycles=0)
    assert set(zip(problem.wbits, problem.abits, strict=True)) == set(BIT_PAIRS)
    narrow = build_problem(workload, target, scores, [(8, 8)], cost_table=costs, vector_cycles=0)
    assert len(narrow) == len(workload.gemms)


def test_onchip_capacity_counts_bram_and_uram_under_caps_minus_activation_buffers() -> None:
    target = fake_target()
    expected = 100 * 0.8 * BRAM36_BITS + 10 * 0.8 * URAM_BITS - 8 * (16_384 + 8_192)
    assert onchip_capacity_bits(target) == int(expected)
    assert fake_problem().onchip_capacity_bits == int(expected)


@pytest.mark.parametrize("name", ["zcu102", "bitfusion_16x32"])
def test_onchip_capacity_of_shipped_targets(name: str) -> None:
    """FPGA: BRAM36/URAM under caps less the activation buffers placed there; ASIC: SRAM less those buffers."""
    target = sim.load_target(name)
    device, buffers = target.device, target.accelerator.buffers
    activations = 8 * (buffers.ifmap_bytes + buffers.ofmap_bytes)
    if device.kind == "asic":
        assert onchip_capacity_bits(target) == 8 * device.sram_bytes - activations
    else:
        memory = device.bram36 * target.caps.bram36 * BRAM36_BITS + device.uram * target.caps.uram * URAM_BITS
        assert onchip_capacity_bits(target) == int(memory - activations)
    assert onchip_capacity_bits(target) > 0


def test_a_layer_without_a_score_is_named() -> None:
    workload, target = tiny_vit(), fake_target()
    scores = sensitivity_table(workload, BIT_PAIRS)
    scores = scores[scores["layer"] != "blocks.0.mlp.fc1"]
    costs = fake_cost_table(workload, target, BIT_PAIRS)
    with pytest.raises(InputError, match=r"blocks\.0\.mlp\.fc1.*no bit choice"):
        build_problem(workload, target, scores, BIT_PAIRS, cost_table=costs, vector_cycles=0)


def test_a_score_for_an_unknown_layer_is_named() -> None:
    workload, target = tiny_vit(), fake_target()
    scores = sensitivity_table(workload, BIT_PAIRS)
    scores.loc[0, "layer"] = "blocks.9.attn.qkv"
    costs = fake_cost_table(workload, target, BIT_PAIRS)
    with pytest.raises(InputError, match=r"blocks\.9\.attn\.qkv.*not a GEMM"):
        build_problem(workload, target, scores, BIT_PAIRS, cost_table=costs, vector_cycles=0)


def test_a_duplicated_score_is_named() -> None:
    workload, target = tiny_vit(), fake_target()
    scores = sensitivity_table(workload, BIT_PAIRS)
    scores = pd.concat([scores, scores.iloc[[3]]])
    costs = fake_cost_table(workload, target, BIT_PAIRS)
    with pytest.raises(InputError, match="appears twice"):
        build_problem(workload, target, scores, BIT_PAIRS, cost_table=costs, vector_cycles=0)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("sensitivity", float("nan"), "sensitivity=nan"),
        ("latency_cycles", -5, "latency_cycles=-5"),
        ("size_bits", float("inf"), "size_bits=inf"),
        ("bops", -1, "bops=-1"),
    ],
)
def test_bad_numbers_are_named_with_their_layer(column: str, value: float, reason: str) -> None:
    frame = fake_problem().to_frame()
    frame[column] = frame[column].astype(float)
    frame.loc[7, column] = value
    layer = frame.loc[7, "layer"]
    with pytest.raises(InputError, match=rf"{layer}.*{reason}"):
        Problem.from_frame(frame, clock_mhz=200.0)


def test_a_layer_in_the_order_without_rows_is_named() -> None:
    frame = fake_problem().to_frame()
    with pytest.raises(InputError, match=r"'extra' has no bit choice"):
        Problem.from_frame(frame, clock_mhz=200.0, layers=[*dict.fromkeys(frame["layer"]), "extra"])


def test_duplicate_options_and_missing_columns_are_errors() -> None:
    frame = fake_problem().to_frame()
    with pytest.raises(InputError, match="twice"):
        Problem.from_frame(pd.concat([frame, frame.iloc[[0]]]), clock_mhz=200.0)
    with pytest.raises(InputError, match="missing column"):
        Problem.from_frame(frame.drop(columns=["bops"]), clock_mhz=200.0)
    with pytest.raises(InputError, match="clock_mhz"):
        Problem.from_frame(frame, clock_mhz=0.0)


def test_rows_are_sorted_by_layer_order_then_bits_and_read_only() -> None:
    problem = fake_problem()
    shuffled = problem.to_frame().sample(frac=1.0, random_state=1)
    again = Problem.from_frame(shuffled, clock_mhz=200.0, layers=problem.layers)
    pd.testing.assert_frame_equal(again.to_frame(), problem.to_frame())
    for i, rows in enumerate(problem.choice_rows):
        assert set(problem.option_layer[rows]) == {problem.layers[i]}
    with pytest.raises(ValueError, match="read-only"):
        problem.sensitivity[0] = 1.0


def test_with_sensitivity_replaces_scores() -> None:
    problem = fake_problem()
    frame = problem.to_frame()[["layer", "wbits", "abits"]].assign(sensitivity=1.5)
    assert (problem.with_sensitivity(frame).sensitivity == 1.5).all()
    some = frame.iloc[:3]
    partial = problem.with_sensitivity(some, partial=True)
    assert (partial.sensitivity[:3] == 1.5).all()
    np.testing.assert_array_equal(partial.sensitivity[3:], problem.sensitivity[3:])
    with pytest.raises(InputError, match="no score"):
        problem.with_sensitivity(some)
    with pytest.raises(InputError, match="not a choice"):
        problem.with_sensitivity(
            pd.DataFrame([{"layer": "head", "wbits": 3, "abits": 3, "sensitivity": 1.0}]), partial=True
        )


def test_ties_parse_and_validate() -> None:
    tie = Tie.parse(("blocks.0.attn.matmul_qk", "blocks.0.attn.qkv", "abits"))
    assert tie.members == (("blocks.0.attn.matmul_qk", "abits"), ("blocks.0.attn.qkv", "abits"))
    assert Tie.parse((("head", "wbits"), ("head", "abits"))) == Tie((("head", "wbits"), ("head", "abits")))
    assert str(tie) == "blocks.0.attn.matmul_qk.abits = blocks.0.attn.qkv.abits"
    problem = fake_problem(ties=[tie])
    assert problem.ties == (tie,)
    with pytest.raises(InputError, match="'nope' is not in the problem"):
        fake_problem(ties=[("nope", "head", "abits")])
    with pytest.raises(InputError, match="not one of"):
        Tie.of("head", "blocks.0.attn.qkv", field="kbits")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="pair to a single"):
        Tie((("head", "bits"), ("blocks.0.attn.qkv", "abits")))
    with pytest.raises(InputError, match="at least two"):
        Tie.of("head")


def test_a_tie_without_a_common_value_is_an_error() -> None:
    frame = fake_problem().to_frame()
    frame = frame[~((frame["layer"] == "head") & (frame["wbits"] > 2))]
    Problem.from_frame(frame, clock_mhz=200.0, ties=[Tie((("head", "abits"), ("blocks.0.attn.qkv", "wbits")))])
    with pytest.raises(InputError, match="no bit value in common"):
        Problem.from_frame(frame, clock_mhz=200.0, ties=[Tie((("head", "wbits"), ("blocks.0.attn.qkv", "abits")))])


def test_ms_and_cycles_convert_at_the_clock() -> None:
    problem = fake_problem()
    assert problem.cycles_to_ms(200_000) == pytest.approx(1.0)
    assert problem.ms_to_cycles(0.5) == pytest.approx(100_000)


@pytest.mark.parametrize("target_name", ["fake", "zcu102", "bitfusion_16x32"])
@pytest.mark.parametrize("ideal_memory", [False, True])
def test_per_layer_latencies_add_up_to_the_whole_model_simulation(target_name: str, ideal_memory: bool) -> None:
    """Σ latency of the chosen options + vector cycles = sim.simulate of the same plan, within 1 %."""
    workload = tiny_vit(depth=2)
    target = fake_target() if target_name == "fake" else sim.load_target(target_name)
    pairs = [(w, a) for w in (2, 4, 8) for a in (4, 8)]
    problem = build_problem(workload, target, sensitivity_table(workload, pairs), pairs, ideal_memory=ideal_memory)
    assert problem.fixed_cycles == sim.vector_cycles(workload, target)
    # on the lanes every vector operator is fixed time; zcu102 fuses them all into GEMM tails (option costs)
    assert problem.fixed_cycles > 0 or target.accelerator.nonlinear.configured
    rng = np.random.default_rng(3)
    for _ in range(3):
        rows = np.array([rng.choice(r) for r in problem.choice_rows])
        plan = {str(problem.option_layer[r]): (int(problem.wbits[r]), int(problem.abits[r])) for r in rows}
        whole = sim.simulate(workload, target, bits=plan, ideal_memory=ideal_memory)
        summed = problem.fixed_cycles + problem.latency_cycles[rows].sum()
        assert summed == pytest.approx(whole.cycles, rel=0.01)
        assert problem.cycles_to_ms(summed) == pytest.approx(whole.latency_ms, rel=0.01)


def test_layer_is_an_alias_of_option_layer() -> None:
    """``Problem.layer`` (the earlier name of the per-row layer column) stays readable and is the same array."""
    problem = Problem.from_frame(
        pd.DataFrame(
            {"layer": ["b", "a", "b"], "wbits": [4, 8, 8], "abits": [8, 8, 8], "sensitivity": [1.0, 0.0, 0.5],
             "latency_cycles": [10, 20, 20], "size_bits": [1, 2, 2], "bops": [1, 1, 1]}
        ),
        clock_mhz=100.0,
    )  # fmt: skip
    assert problem.layers == ("b", "a")
    assert list(problem.option_layer) == ["b", "b", "a"]
    assert problem.layer is problem.option_layer
    assert list(problem.to_frame()["layer"]) == ["b", "b", "a"]
