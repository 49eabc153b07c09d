"""allocator/ilp/patchwise.py and allocator/sensitivity/tokens.py: token-split options in the ILP's table, their
Ω, costs and BOPs, the ILP choosing them, the plan they give, and the CLI's checks of --patchwise."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import sim
from allocator.cli.main import main
from allocator.ilp.model import Limits, allocate, problem_from_json
from allocator.ilp.patchwise import split_choices, split_layers, with_token_splits
from allocator.ilp.problem import Problem, build_problem
from allocator.sensitivity.tokens import token_shares
from quant.errors import InputError as QuantInputError
from quant.models import create_model
from quant.plan import BitPlan
from quant.tokens import high_token_count
from sim.errors import InputError
from sim.patchwise import TokenSplit, high_rows
from sim.workload import Gemm, Workload

TARGET = "bitfusion_16x32"
PAIRS = [(4, 8), (4, 4), (4, 2)]


def block() -> Workload:
    """One ViT-like block of 17 tokens (the digits testbed's token count)."""
    ops = [
        Gemm("qkv", "qkv", 17, 192, 64, weight_params=64 * 192),
        Gemm("qk", "attn_qk", 17, 17, 16, b_is_weight=False, count=4),
        Gemm("fc1", "fc1", 17, 128, 64, weight_params=64 * 128),
    ]
    return Workload.from_ops("block", ops)


def omega(bits: int) -> float:
    return {8: 0.0, 4: 1.0, 2: 5.0}[bits]


def layerwise_problem(workload: Workload) -> Problem:
    scores = pd.DataFrame(
        [(g.name, w, a, omega(a)) for g in workload.gemms for w, a in PAIRS],
        columns=["layer", "wbits", "abits", "sensitivity"],
    )
    return build_problem(workload, sim.load_target(TARGET), scores, PAIRS)


def test_the_row_rules_of_sim_and_quant_agree() -> None:
    for tokens in (1, 2, 17, 50, 197, 785, 3136):
        for fraction in (0.01, 0.1, 0.25, 1 / 3, 0.5, 0.7, 0.99):
            assert high_rows(tokens, fraction) == high_token_count(tokens, fraction)


def test_split_options_get_costs_from_the_simulator_and_omega_from_the_share() -> None:
    workload = block()
    target = sim.load_target(TARGET)
    problem = layerwise_problem(workload)
    assert split_layers(workload) == ["qkv", "fc1"]
    assert split_choices(problem, "qkv") == [(4, 4, 2), (4, 8, 2), (4, 8, 4)]
    split = with_token_splits(problem, workload, target, 0.25, {"qkv": 0.4, "fc1": 0.6})
    assert len(split) == len(problem) + 6 and split.has_token_splits
    frame = split.to_frame()
    row = frame[(frame["layer"] == "qkv") & (frame["abits"] == 8) & (frame["abits_low"] == 4)].iloc[0]
    assert row["sensitivity"] == pytest.approx(0.4 * 0.0 + 0.6 * 1.0)
    high = high_rows(17, 0.25)
    assert row["bops"] == 192 * 64 * 4 * (high * 8 + (17 - high) * 4)
    result = sim.simulate(workload, target, {"qkv": (4, 8), "qk": (4, 8), "fc1": (4, 8)}, token_splits={
        "qkv": TokenSplit(4, 0.25)
    })  # fmt: skip
    assert row["latency_cycles"] == next(layer.cycles for layer in result.layers if layer.name == "qkv")
    # 17 tokens on 16 rows: the layer-wise GEMM takes 2 row tiles at 8 bits, the split one tile at 8 and one at 4
    # (compute only: with bitfusion's 112 KiB, the split's one-tile groups reload less and beat W4A4 in total)
    scores = pd.DataFrame(
        [(g.name, w, a, omega(a)) for g in workload.gemms for w, a in PAIRS],
        columns=["layer", "wbits", "abits", "sensitivity"],
    )
    ideal = build_problem(workload, target, scores, PAIRS, ideal_memory=True)
    ideal = with_token_splits(ideal, workload, target, 0.25, {"qkv": 0.4, "fc1": 0.6}, ideal_memory=True).to_frame()
    qkv = ideal[ideal["layer"] == "qkv"].set_index(["abits", "abits_low"])["latency_cycles"]
    fold = 64 + 16 + 32 - 2  # OS fold cycles, K + R + C - 2
    reorder = 17 * target.accelerator.patchwise.reorder_cycles_per_token  # the design sorts the 17 tokens
    assert (qkv[(8, 0)], qkv[(8, 4)], qkv[(4, 0)]) == (2 * 3 * fold, (3 + 2) * fold + reorder, 2 * 2 * fold)
    assert set(frame.loc[frame["layer"] == "qk", "abits_low"]) == {0}  # attention matmuls stay layer-wise


def test_the_ilp_chooses_a_split_when_it_pays_and_the_plan_says_so() -> None:
    workload = block()
    target = sim.load_target(TARGET)
    problem = with_token_splits(layerwise_problem(workload), workload, target, 0.25, {"qkv": 0.9, "fc1": 0.9})
    # share 0.9: Ω(8/4 split) = 0.1·Ω(4) = 0.1, Ω(8/2 split) = 0.5, Ω(A4) = 1, Ω(A8) = 0; with the latency of both
    # Linear layers split 8/4 and qk at 8 bits, that is the optimum (Ω 0.2)
    frame = problem.to_frame()
    split_cycles = frame[(frame["abits"] == 8) & (frame["abits_low"] == 4)]["latency_cycles"].sum()
    qk8 = frame[(frame["layer"] == "qk") & (frame["abits"] == 8)]["latency_cycles"].iloc[0]
    budget = problem.cycles_to_ms(split_cycles + qk8 + problem.fixed_cycles)
    allocation = allocate(problem, Limits(latency_ms=budget)).check()
    chosen = {c.layer: c for c in allocation.chosen}
    assert allocation.status == "optimal" and allocation.objective == pytest.approx(0.2)
    assert chosen["qkv"].abits_low == 4 and chosen["fc1"].abits_low == 4 and chosen["qk"].abits_low == 0
    layerwise = allocate(layerwise_problem(workload), Limits(latency_ms=budget)).check()
    assert layerwise.objective > allocation.objective
    plan = allocation.plan()
    assert plan["layers"]["qkv"] == {"wbits": 4, "abits": 8, "abits_low": 4, "token_fraction": 0.25}
    assert BitPlan.from_dict(plan).bits_for("fc1").token_split
    # the JSON object round-trips with its split options
    obj = {**allocation.to_json(), "clock_mhz": problem.clock_mhz, "fixed_cycles": problem.fixed_cycles}
    again, limits = problem_from_json(json.loads(json.dumps(obj)))
    assert allocate(again, limits).plan()["layers"] == plan["layers"]


def test_bad_split_options_are_refused() -> None:
    workload = block()
    target = sim.load_target(TARGET)
    problem = layerwise_problem(workload)
    with pytest.raises(InputError, match="outside \\(0, 1\\)"):
        with_token_splits(problem, workload, target, 1.0, {"qkv": 0.5, "fc1": 0.5})
    with pytest.raises(InputError, match="no patch-wise support"):
        with_token_splits(problem, workload, sim.load_target("kv260"), 0.5, {"qkv": 0.5, "fc1": 0.5})
    with pytest.raises(InputError, match="share"):
        with_token_splits(problem, workload, target, 0.5, {"qkv": 0.5})
    frame = problem.to_frame()
    frame["abits_low"] = np.where(frame["abits"] == 4, 8, 0)
    frame["token_fraction"] = np.where(frame["abits"] == 4, 0.5, 0.0)
    with pytest.raises(InputError, match="abits_low below abits"):
        Problem.from_frame(frame, clock_mhz=100.0)


def test_token_shares_of_the_norm_score_are_at_least_the_fraction() -> None:
    torch.manual_seed(0)
    net = create_model("mixbit_vit_test").eval()
    images = torch.randn(8, 1, 16, 16)
    layers = ["blocks.0.attn.qkv", "blocks.0.mlp.fc2"]
    norm = token_shares(net, images, 0.25, layers)
    random = token_shares(net, images, 0.25, layers, score="random")
    attention = token_shares(net, images, 0.25, layers, score="cls_attn")
    tokens = 17
    for name in layers:
        assert high_token_count(tokens, 0.25) / tokens <= norm[name] <= 1.0
        assert 0.0 < random[name] < norm[name]
    # no attention before block 0's qkv: the norm share (on the 8-bit-weight copy, so not to the last digit)
    assert attention["blocks.0.attn.qkv"] == pytest.approx(norm["blocks.0.attn.qkv"], rel=1e-3)
    assert high_token_count(tokens, 0.25) / tokens <= attention["blocks.0.mlp.fc2"] <= 1.0
    assert attention["blocks.0.mlp.fc2"] != pytest.approx(norm["blocks.0.mlp.fc2"], rel=1e-2)
    with pytest.raises(QuantInputError, match="not a Linear"):
        token_shares(net, images, 0.25, ["blocks.0.attn"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--patchwise", "0"], "outside (0, 1)"),
        (["--patchwise", "1.5"], "outside (0, 1)"),
        (["--patchwise", "nan"], "outside (0, 1)"),
        (["--patchwise", "x"], "between 0 and 1"),
    ],
)
def test_cli_refuses_a_fraction_outside_zero_one(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["allocate", "--target", "zcu102", "--model", "mixbit_vit_digits", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0] and "--patchwise" in err[0]


def test_cli_refuses_patchwise_bits_on_a_target_without_them(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["allocate", "--target", "kv260", "--model", "mixbit_vit_digits", "--patchwise", "0.25"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --patchwise: target 'kv260' has no patch-wise support (no [accelerator.patchwise] table in its file)"
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"default": {"wbits": 8, "abits": 8, "abits_low": 4, "token_fraction": 0.25}}))
    assert main(["simulate", "--target", "kv260", "--gemm", "197,384,384", "--bits", str(plan)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'kv260' has no patch-wise support" in err[0]
    assert main(["simulate", "--target", "zcu102", "--gemm", "197,384,384", "--bits", str(plan), "--json"]) == 0
    layer = json.loads(capsys.readouterr().out)["layers"][0]
    assert (layer["abits_low"], layer["token_fraction"]) == (4, 0.25)
    assert math.isclose(layer["token_fraction"], 0.25)


def test_uniform_baselines_ignore_the_split_options() -> None:
    from allocator.pipeline.run import predicted_uniform

    workload = block()
    problem = layerwise_problem(workload)
    split = with_token_splits(problem, workload, sim.load_target(TARGET), 0.25, {"qkv": 0.5, "fc1": 0.5})
    assert predicted_uniform(split, 4, 8) == predicted_uniform(problem, 4, 8)
