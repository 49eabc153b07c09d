"""The energy limit (``Limits.energy_mj``, ``mixbit allocate --energy-mj``): brute force, messages, additivity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sim
from allocator.ilp.model import InfeasibleError, Limits, allocate
from allocator.ilp.problem import Problem, build_problem
from sim import Gemm, VectorOp, Workload

PAIRS = [(8, 8), (4, 8), (4, 4), (2, 4)]


def random_energy_problem(rng: np.random.Generator, layers: int) -> Problem:
    """Random integer latency and energy per option (exact sums), random Ω, a fixed energy part."""
    rows = []
    for i in range(layers):
        for w, a in PAIRS[: rng.integers(1, len(PAIRS) + 1)]:
            rows.append(
                {
                    "layer": f"l{i}",
                    "wbits": w,
                    "abits": a,
                    "sensitivity": float(rng.random()),
                    "latency_cycles": int(rng.integers(10, 1000)),
                    "size_bits": w * 1000,
                    "bops": w * a * 10**6,
                    "energy_mj": float(rng.integers(1, 100)),
                }
            )
    return Problem.from_frame(pd.DataFrame(rows), clock_mhz=100.0, fixed_energy_mj=float(rng.integers(0, 50)))


def brute_force(problem: Problem, limits: Limits) -> float | None:
    """Minimum Σ Ω over every plan within the energy (and latency) limit; None when none is."""
    grids = np.meshgrid(*problem.choice_rows, indexing="ij")
    plans = np.stack([g.ravel() for g in grids], axis=1)
    ok = np.ones(len(plans), dtype=bool)
    if limits.energy_mj is not None:
        ok &= problem.fixed_energy_mj + problem.energy_mj[plans].sum(1) <= limits.energy_mj * (1 + 1e-9)
    if limits.latency_ms is not None:
        budget = problem.ms_to_cycles(limits.latency_ms) - problem.fixed_cycles
        ok &= problem.latency_cycles[plans].sum(1) <= budget * (1 + 1e-9)
    return float(problem.sensitivity[plans[ok]].sum(1).min()) if ok.any() else None


def test_energy_limit_matches_brute_force_on_random_small_problems() -> None:
    rng = np.random.default_rng(16)
    solved = infeasible = 0
    for _ in range(60):
        problem = random_energy_problem(rng, int(rng.integers(1, 5)))
        low = problem.fixed_energy_mj + sum(problem.energy_mj[r].min() for r in problem.choice_rows)
        high = problem.fixed_energy_mj + sum(problem.energy_mj[r].max() for r in problem.choice_rows)
        energy = low + rng.uniform(-0.2, 1.0) * (high - low)
        latency = (
            problem.cycles_to_ms(problem.latency_cycles.max() * len(problem.layers)) if rng.random() < 0.5 else None
        )
        limits = Limits(energy_mj=energy if energy > 0 else None, latency_ms=latency)
        expected = brute_force(problem, limits)
        allocation = allocate(problem, limits)
        if expected is None:
            assert allocation.status == "infeasible"
            infeasible += 1
            continue
        assert allocation.status == "optimal"
        assert allocation.objective == pytest.approx(expected, rel=1e-9, abs=1e-12)
        chosen = allocation.to_frame()
        assert allocation.predicted.energy_mj == pytest.approx(problem.fixed_energy_mj + chosen["energy_mj"].sum())
        if limits.energy_mj is not None:
            assert allocation.predicted.energy_mj <= limits.energy_mj * (1 + 1e-9)
        solved += 1
    assert solved > 20 and infeasible > 0  # both branches were exercised


def test_energy_limit_changes_the_plan() -> None:
    # layer a: W8A8 is the most accurate but costs 30 mJ; W4A4 costs 10 mJ. Fixed part 5 mJ.
    frame = pd.DataFrame(
        [("a", 8, 8, 0.0, 100, 8e3, 1e6, 30.0), ("a", 4, 4, 1.0, 100, 4e3, 1e6, 10.0)],
        columns=["layer", "wbits", "abits", "sensitivity", "latency_cycles", "size_bits", "bops", "energy_mj"],
    )
    problem = Problem.from_frame(frame, clock_mhz=1.0, fixed_energy_mj=5.0)
    assert allocate(problem).chosen[0].wbits == 8
    limited = allocate(problem, Limits(energy_mj=20.0))
    assert (limited.chosen[0].wbits, limited.predicted.energy_mj) == (4, 15.0)
    impossible = allocate(problem, Limits(energy_mj=12.0))
    assert impossible.status == "infeasible"
    assert impossible.message == "energy 12 mJ cannot be met; the least-energy plan takes 15 mJ"
    with pytest.raises(InfeasibleError, match="least-energy plan takes 15 mJ"):
        impossible.check()
    assert limited.to_json()["constraints"]["energy_mj"] == 20.0
    assert limited.to_json()["predicted"]["energy_mj"] == 15.0
    assert {"energy_mj"} <= set(limited.to_json()["options"][0])


def block() -> Workload:
    return Workload.from_ops(
        "block",
        [
            VectorOp("norm", "layernorm", 64 * 96, row=96),
            Gemm("qkv", "qkv", 64, 288, 96, weight_params=96 * 288),
            Gemm("qk", "attn_qk", 64, 64, 32, b_is_weight=False, count=3),
            VectorOp("softmax", "softmax", 3 * 64 * 64, row=64),
            Gemm("fc1", "fc1", 64, 384, 96, weight_params=96 * 384),
            VectorOp("gelu", "gelu", 64 * 384),
            Gemm("fc2", "fc2", 64, 96, 384, weight_params=384 * 96),
            VectorOp("residual", "add", 64 * 96),
        ],
    )


@pytest.mark.parametrize("name", ["zcu102", "bitfusion_16x32"])  # fused own units; legacy lanes
def test_plan_energy_is_the_simulated_energy(name: str) -> None:
    """Σ per-option energy + the fixed part = ``sim.simulate``'s whole-model energy, for uniform and mixed plans."""
    workload, target = block(), sim.load_target(name)
    pairs = [(8, 8), (4, 4)]
    scores = pd.DataFrame(
        [(g.name, w, a, 0.0) for g in workload.gemms for w, a in pairs],
        columns=["layer", "wbits", "abits", "sensitivity"],
    )
    problem = build_problem(workload, target, scores, pairs)
    assert problem.fixed_energy_mj == pytest.approx(sim.vector_energy_mj(workload, target))
    plans = [
        dict.fromkeys((g.name for g in workload.gemms), (8, 8)),
        {"qkv": (8, 8), "qk": (4, 4), "fc1": (4, 4), "fc2": (8, 8)},
    ]
    for plan in plans:
        rows = [
            int(np.flatnonzero((problem.layer == layer) & (problem.wbits == w) & (problem.abits == a))[0])
            for layer, (w, a) in plan.items()
        ]
        total = problem.fixed_energy_mj + float(problem.energy_mj[rows].sum())
        assert total == pytest.approx(sim.simulate(workload, target, plan).energy_mj, rel=1e-9)
        assert total > problem.fixed_energy_mj > 0


def test_the_one_budget_dp_takes_an_energy_limit_and_equals_brute_force_and_the_ilp() -> None:
    """An energy limit alone is a one-budget knapsack: the DP (the sweep's co-design solver) answers it exactly,
    with the ILP's status, objective and message."""
    from allocator.ilp.mckp import single_budget, solve_single_budget

    rng = np.random.default_rng(17)
    solved = infeasible = 0
    for _ in range(60):
        problem = random_energy_problem(rng, int(rng.integers(1, 6)))
        low = problem.fixed_energy_mj + sum(problem.energy_mj[r].min() for r in problem.choice_rows)
        high = problem.fixed_energy_mj + sum(problem.energy_mj[r].max() for r in problem.choice_rows)
        limits = Limits(energy_mj=max(1e-9, low + rng.uniform(-0.2, 1.0) * (high - low)))
        assert single_budget(problem, limits) == "energy"
        got, ilp = solve_single_budget(problem, limits), allocate(problem, limits)
        expected = brute_force(problem, limits)
        assert got.status == ilp.status
        if expected is None:
            assert got.status == "infeasible" and got.message == ilp.message
            infeasible += 1
            continue
        assert got.objective == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert got.objective == pytest.approx(ilp.objective, rel=1e-9, abs=1e-12)
        assert got.predicted.energy_mj <= limits.energy_mj * (1 + 1e-9)
        solved += 1
    assert solved >= 20 and infeasible >= 3
