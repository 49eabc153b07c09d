"""The bit-allocation ILP: optimum against brute force and HiGHS, infeasibility messages, Pareto front, refinement."""

from __future__ import annotations

import itertools
import json
import math

import highspy
import mip
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from allocator.ilp.model import InfeasibleError, Limits, allocate, build_model, pareto_front
from allocator.ilp.problem import Problem, Tie
from sim.errors import InputError

BIT_POOL = [(w, a) for w in (2, 3, 4, 6, 8) for a in (2, 3, 4, 6, 8)]


def random_problem(rng: np.random.Generator, layers: int, choices: int, ties: int = 0) -> Problem:
    """Random integer costs (so brute-force sums are exact), random Ω, up to ``choices`` bit pairs per layer."""
    rows = []
    names = [f"layer{i}" for i in range(layers)]
    for name in names:
        picks = rng.choice(len(BIT_POOL), size=rng.integers(1, choices + 1), replace=False)
        for p in picks:
            wbits, abits = BIT_POOL[p]
            rows.append(
                {
                    "layer": name,
                    "wbits": wbits,
                    "abits": abits,
                    "sensitivity": float(rng.random() * 10.0 ** rng.integers(-3, 2)),
                    "latency_cycles": int(rng.integers(10, 1000)),
                    "size_bits": int(rng.integers(0, 4)) * wbits * 1000,
                    "bops": int(rng.integers(1, 50)) * wbits * abits * 10**6,
                    "onchip_bits": int(rng.integers(0, 5000)),
                }
            )
    frame = pd.DataFrame(rows)
    problem = Problem.from_frame(frame, clock_mhz=100.0, layers=names, fixed_cycles=int(rng.integers(0, 100)))
    tie_list = []
    for _ in range(ties):
        a, b = rng.choice(layers, size=2, replace=layers < 2)
        fields = rng.choice(["wbits", "abits", "bits"], size=1)[0]
        field_b = fields if fields == "bits" else rng.choice(["wbits", "abits"], size=1)[0]
        tie = Tie(((names[a], str(fields)), (names[b], str(field_b))))
        try:
            problem.check_ties([tie])
        except InputError:
            continue
        tie_list.append(tie)
    return Problem.from_frame(
        frame,
        clock_mhz=100.0,
        layers=names,
        fixed_cycles=problem.fixed_cycles,
        onchip_capacity_bits=int(rng.integers(0, 5000 * layers)),
        ties=tie_list,
    )


def _tie_value(problem: Problem, row: np.ndarray, field: str) -> np.ndarray:
    if field == "wbits":
        return problem.wbits[row]
    if field == "abits":
        return problem.abits[row]
    return problem.wbits[row] * 100 + problem.abits[row]


def brute_force(problem: Problem, limits: Limits) -> float | None:
    """Minimum Σ Ω over every plan that meets the limits and ties, by enumeration; None when none does."""
    grids = np.meshgrid(*problem.choice_rows, indexing="ij")
    plans = np.stack([g.ravel() for g in grids], axis=1)  # plans × layers, option rows
    ok = np.ones(len(plans), dtype=bool)
    slack = 1 + 1e-9  # budgets in ms round-trip to cycles inexactly; the ILP allows the same slack
    if limits.latency_ms is not None:
        budget = problem.ms_to_cycles(limits.latency_ms) - problem.fixed_cycles
        ok &= problem.latency_cycles[plans].sum(1) <= budget * slack
    if limits.size_mb is not None:
        ok &= problem.size_bits[plans].sum(1) <= limits.size_mb * 8e6 * slack
    if limits.bops is not None:
        ok &= problem.bops[plans].sum(1) <= limits.bops * 1e9 * slack
    if limits.onchip:
        ok &= problem.onchip_bits[plans].sum(1) <= problem.onchip_capacity_bits * slack
    index = {name: i for i, name in enumerate(problem.layers)}
    for tie in (*problem.ties, *limits.ties):
        for (la, fa), (lb, fb) in itertools.pairwise(tie.members):
            ok &= _tie_value(problem, plans[:, index[la]], fa) == _tie_value(problem, plans[:, index[lb]], fb)
    if not ok.any():
        return None
    return float(problem.sensitivity[plans[ok]].sum(1).min())


def random_limits(rng: np.random.Generator, problem: Problem) -> Limits:
    """Each limit on with probability 1/2, set between the smallest and largest total any plan can have."""

    def between(column: np.ndarray) -> float:
        low = sum(column[r].min() for r in problem.choice_rows)
        high = sum(column[r].max() for r in problem.choice_rows)
        return low + rng.uniform(-0.1, 1.0) * (high - low)

    on = rng.random(4) < 0.5
    latency = problem.cycles_to_ms(problem.fixed_cycles + between(problem.latency_cycles))
    size = between(problem.size_bits) / 8e6
    bops = between(problem.bops) / 1e9
    return Limits(
        latency_ms=latency if on[0] and latency > 0 else None,
        size_mb=size if on[1] and size > 0 else None,
        bops=bops if on[2] and bops > 0 else None,
        onchip=bool(on[3]),
    )


def check_plan(problem: Problem, limits: Limits, allocation) -> None:
    """The chosen plan has one option per layer, meets every limit and tie, and its objective is its Σ Ω."""
    frame = allocation.to_frame()
    assert list(frame["layer"]) == list(problem.layers)
    assert allocation.objective == pytest.approx(frame["sensitivity"].sum(), rel=1e-12)
    p = allocation.predicted
    assert p.latency_ms == pytest.approx(problem.cycles_to_ms(problem.fixed_cycles + frame["latency_cycles"].sum()))
    slack = 1 + 1e-9
    if limits.latency_ms is not None:
        assert p.latency_ms <= limits.latency_ms * slack
    if limits.size_mb is not None:
        assert p.size_mb <= limits.size_mb * slack
    if limits.bops is not None:
        assert p.bops <= limits.bops * slack
    if limits.onchip:
        assert p.onchip_bits <= problem.onchip_capacity_bits * slack
    chosen = {c.layer: c for c in allocation.chosen}
    for tie in (*problem.ties, *limits.ties):
        values = {
            (chosen[layer].wbits, chosen[layer].abits) if f == "bits" else getattr(chosen[layer], f)
            for layer, f in tie.members
        }
        assert len(values) == 1, str(tie)


@pytest.mark.parametrize(
    ("seed", "instances"), [(2024, 100), pytest.param(99, 600, marks=pytest.mark.slow, id="600-instances")]
)
def test_optimum_equals_brute_force_on_random_small_problems(seed: int, instances: int) -> None:
    """Random problems (≤ 8 layers × ≤ 4 choices, up to 2 ties, random limits), infeasible ones included."""
    rng = np.random.default_rng(seed)
    solved = infeasible = 0
    for _ in range(instances):
        problem = random_problem(rng, layers=int(rng.integers(1, 9)), choices=4, ties=int(rng.integers(0, 3)))
        limits = random_limits(rng, problem)
        expected = brute_force(problem, limits)
        allocation = allocate(problem, limits)
        if expected is None:
            assert allocation.status == "infeasible"
            assert allocation.message
            infeasible += 1
        else:
            assert allocation.status == "optimal"
            assert allocation.objective == pytest.approx(expected, rel=1e-9, abs=1e-12)
            check_plan(problem, limits, allocation)
            solved += 1
    assert solved >= 0.4 * instances and infeasible >= 0.1 * instances  # both outcomes were exercised


def test_build_model_is_optimal_with_the_brute_force_objective() -> None:
    rng = np.random.default_rng(7)
    problem = random_problem(rng, layers=6, choices=4, ties=2)
    fastest = sum(problem.latency_cycles[r].min() for r in problem.choice_rows)
    limits = Limits(latency_ms=problem.cycles_to_ms(problem.fixed_cycles + fastest * 1.3))
    model = build_model(problem, limits)
    assert model.num_cols == len(problem)
    assert model.constr_by_name("latency") is not None and model.constr_by_name("one_choice_0") is not None
    assert model.optimize() == mip.OptimizationStatus.OPTIMAL
    scale = problem.sensitivity.max() / 1e6
    assert model.objective_value * scale == pytest.approx(brute_force(problem, limits), rel=1e-9)


# ---- DeiT-S-size problems against HiGHS -------------------------------------------------------------------------


def deit_small_problem(seed: int = 0) -> Problem:
    """DeiT-S's 74 GEMMs (attention matmuls once per block, 6 heads) × 25 bit pairs; costs from closed forms of
    a 32×32 output-stationary Bit Fusion array with operand streaming at 8 bytes/cycle; Ω random (seeded)."""
    rng = np.random.default_rng(seed)
    tokens, dim, heads, hidden = 197, 384, 6, 1536
    gemms = [("patch_embed.proj", 196, dim, 768, 768 * dim, 1)]
    for b in range(12):
        p = f"blocks.{b}"
        gemms += [
            (f"{p}.attn.qkv", tokens, 3 * dim, dim, 3 * dim * dim, 1),
            (f"{p}.attn.matmul_qk", tokens, tokens, dim // heads, 0, heads),
            (f"{p}.attn.matmul_av", tokens, dim // heads, tokens, 0, heads),
            (f"{p}.attn.proj", tokens, dim, dim, dim * dim, 1),
            (f"{p}.mlp.fc1", tokens, hidden, dim, dim * hidden, 1),
            (f"{p}.mlp.fc2", tokens, dim, hidden, dim * hidden, 1),
        ]
    gemms.append(("head", 1, 1000, dim, 1000 * dim, 1))
    rows = []
    for name, m, n, k, params, count in gemms:
        trace = rng.lognormal(0.0, 1.0)
        for wbits, abits in BIT_POOL:
            per_cycle = (8 // abits) * (8 // wbits)
            compute = count * math.ceil(m / 32) * math.ceil(n / 32) * (math.ceil(k / per_cycle) + 62)
            moved = count * (k * n * wbits + m * k * abits) / 8
            rows.append(
                {
                    "layer": name,
                    "wbits": wbits,
                    "abits": abits,
                    "sensitivity": trace * (4.0**-wbits + 4.0**-abits) * rng.uniform(0.8, 1.2),
                    "latency_cycles": max(compute, math.ceil(moved / 8)),
                    "size_bits": params * wbits,
                    "bops": m * n * k * count * wbits * abits,
                    "onchip_bits": params * wbits,
                }
            )
    ties = [Tie(((f"blocks.{b}.attn.matmul_qk", "abits"), (f"blocks.{b}.attn.matmul_qk", "wbits"))) for b in range(12)]
    return Problem.from_frame(
        pd.DataFrame(rows), clock_mhz=200.0, fixed_cycles=50_000, onchip_capacity_bits=80 * 10**6, ties=ties
    )


def highs_optimum(problem: Problem, limits: Limits) -> float:
    """The same ILP built independently for HiGHS (highspy) from the problem's arrays; its proven optimum."""
    n = len(problem)
    index = {name: i for i, name in enumerate(problem.layers)}
    rows: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []
    for choice in problem.choice_rows:
        row = np.zeros(n)
        row[choice] = 1
        rows.append(row)
        lower.append(1)
        upper.append(1)
    budgets = []
    if limits.latency_ms is not None:
        budgets.append((problem.latency_cycles, problem.ms_to_cycles(limits.latency_ms) - problem.fixed_cycles))
    if limits.size_mb is not None:
        budgets.append((problem.size_bits, limits.size_mb * 8e6))
    if limits.bops is not None:
        budgets.append((problem.bops, limits.bops * 1e9))
    if limits.onchip:
        budgets.append((problem.onchip_bits, problem.onchip_capacity_bits))
    for cost, budget in budgets:
        rows.append(np.asarray(cost, dtype=float))
        lower.append(-highspy.kHighsInf)
        upper.append(budget * (1 + 1e-9))
    for tie in (*problem.ties, *limits.ties):
        for (la, fa), (lb, fb) in itertools.pairwise(tie.members):
            ra, rb = problem.choice_rows[index[la]], problem.choice_rows[index[lb]]
            va, vb = _tie_value(problem, ra, fa), _tie_value(problem, rb, fb)
            for value in set(va) | set(vb):
                row = np.zeros(n)
                row[ra[va == value]] += 1  # += as both members may be the same layer
                row[rb[vb == value]] -= 1
                rows.append(row)
                lower.append(0)
                upper.append(0)
    matrix = sp.csc_matrix(np.vstack(rows))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, matrix.shape[0]
    lp.col_cost_ = np.asarray(problem.sensitivity, dtype=float)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_, lp.row_upper_ = np.array(lower, dtype=float), np.array(upper, dtype=float)
    a_matrix = highspy.HighsSparseMatrix()  # lp.a_matrix_ hands out a copy, so build it whole and assign
    a_matrix.format_ = highspy.MatrixFormat.kColwise
    a_matrix.num_col_, a_matrix.num_row_ = n, matrix.shape[0]
    a_matrix.start_, a_matrix.index_, a_matrix.value_ = matrix.indptr, matrix.indices, matrix.data
    lp.a_matrix_ = a_matrix
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("mip_rel_gap", 1e-9)
    highs.setOptionValue("mip_abs_gap", 1e-12)
    highs.passModel(lp)
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(highs.getInfo().objective_function_value)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_optimum_equals_highs_on_deit_small_size_problems(seed: int) -> None:
    problem = deit_small_problem(seed)
    assert len(problem.layers) == 74 and len(problem) == 74 * 25
    fastest = sum(problem.latency_cycles[r].min() for r in problem.choice_rows) + problem.fixed_cycles
    smallest = sum(problem.size_bits[r].min() for r in problem.choice_rows) / 8e6
    limits = Limits(
        latency_ms=problem.cycles_to_ms(fastest) * (1.6 + 0.4 * (seed % 2)),
        size_mb=smallest * (2.5 + 0.2 * seed),
        bops=None if seed % 2 else 400.0 - 50 * seed,
        onchip=bool(seed % 2),
        ties=(Tie.of("blocks.0.attn.qkv", "blocks.0.attn.matmul_qk", field="abits"),),
    )
    allocation = allocate(problem, limits)
    assert allocation.status == "optimal"
    check_plan(problem, limits, allocation)
    assert allocation.objective == pytest.approx(highs_optimum(problem, limits), rel=1e-7)


# ---- infeasible budgets -----------------------------------------------------------------------------------------


def two_layer_problem() -> Problem:
    """At 1 MHz one cycle is 1 µs. Layer a: fast-and-big (W8A8) or slow-and-small (W2A8); layer b: one choice.
    Fastest plan 0.2 ms; smallest 1.25 MB; fewest BOPs 2 G; least on chip 3 Mbit."""
    frame = pd.DataFrame(
        [
            ("a", 8, 8, 0.0, 100, 12e6, 1e9, 12e6),
            ("a", 2, 8, 1.0, 400, 2e6, 1e9, 2e6),
            ("b", 4, 4, 0.5, 100, 8e6, 1e9, 1e6),
        ],
        columns=["layer", "wbits", "abits", "sensitivity", "latency_cycles", "size_bits", "bops", "onchip_bits"],
    )
    return Problem.from_frame(frame, clock_mhz=1.0, onchip_capacity_bits=2_500_000)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(latency_ms=0.15), "latency 0.15 ms cannot be met; the fastest plan takes 0.2 ms"),
        (Limits(size_mb=1.0), "size 1 MB cannot be met; the smallest plan is 1.25 MB"),
        (Limits(bops=1.5), "BOPs 1.5 G cannot be met; the fewest any plan has is 2 G"),
        (Limits(onchip=True), "weights cannot fit in 2.5 Mbit on chip; the smallest plan needs 3 Mbit"),
        (
            Limits(latency_ms=0.15, size_mb=1.0),
            "latency 0.15 ms cannot be met; the fastest plan takes 0.2 ms; "
            "size 1 MB cannot be met; the smallest plan is 1.25 MB",
        ),
        (
            Limits(latency_ms=0.3, size_mb=2.0),
            "latency 0.3 ms and size 2 MB cannot be met together; within latency 0.3 ms the smallest plan is 2.5 MB",
        ),
    ],
)
def test_infeasible_budgets_name_the_limit_and_the_best_value(limits: Limits, message: str) -> None:
    allocation = allocate(two_layer_problem(), limits)
    assert allocation.status == "infeasible"
    assert allocation.message == message
    assert allocation.objective is None and allocation.chosen == () and allocation.predicted is None
    with pytest.raises(InfeasibleError, match=message.split(";")[0]) as raised:
        allocation.check()
    assert isinstance(raised.value, InputError)  # the CLI turns it into exit status 2
    obj = allocation.to_json()
    assert obj["status"] == "infeasible" and obj["message"] == message
    json.dumps(obj, allow_nan=False)


def test_the_same_limits_one_step_looser_are_met() -> None:
    problem = two_layer_problem()
    assert allocate(problem, Limits(latency_ms=0.2)).status == "optimal"
    assert allocate(problem, Limits(size_mb=1.25)).status == "optimal"
    assert allocate(problem, Limits(latency_ms=0.5, size_mb=2.0)).objective == pytest.approx(1.5)
    assert allocate(problem, Limits(latency_ms=0.2, size_mb=2.5)).objective == pytest.approx(0.5)


def test_ties_that_cannot_hold_together_are_reported() -> None:
    frame = pd.DataFrame(
        [("a", 8, 8), ("a", 4, 4), ("b", 8, 4), ("b", 4, 8)], columns=["layer", "wbits", "abits"]
    ).assign(sensitivity=1.0, latency_cycles=1, size_bits=1, bops=1)
    problem = Problem.from_frame(frame, clock_mhz=1.0)
    limits = Limits(ties=(Tie.of("a", "b", field="wbits"), Tie.of("a", "b", field="abits")))
    allocation = allocate(problem, limits)
    assert allocation.status == "infeasible"
    assert allocation.message.startswith("the ties cannot all hold together: a.wbits = b.wbits")
    assert allocate(problem, Limits(ties=limits.ties[:1])).status == "optimal"


def test_limits_are_validated() -> None:
    with pytest.raises(InputError, match="latency_ms=-1"):
        Limits(latency_ms=-1)
    with pytest.raises(InputError, match="size_mb=nan"):
        Limits(size_mb=float("nan"))
    no_capacity = Problem.from_frame(two_layer_problem().to_frame(), clock_mhz=1.0)
    with pytest.raises(InputError, match="no on-chip capacity"):
        allocate(no_capacity, Limits(onchip=True))
    with pytest.raises(InputError, match="not in the problem"):
        allocate(no_capacity, Limits(ties=(Tie.of("a", "zzz"),)))


# ---- results ----------------------------------------------------------------------------------------------------


def test_allocation_json_and_plan_follow_the_contract() -> None:
    problem = deit_small_problem()
    fastest = sum(problem.latency_cycles[r].min() for r in problem.choice_rows) + problem.fixed_cycles
    limits = Limits(latency_ms=problem.cycles_to_ms(fastest) * 1.5)
    allocation = allocate(problem, limits)
    obj = json.loads(json.dumps(allocation.to_json(), allow_nan=False))
    assert {"status", "objective", "constraints", "layers", "options", "predicted"} <= set(obj)
    assert obj["status"] == "optimal" and obj["objective"] == pytest.approx(allocation.objective)
    assert obj["constraints"]["latency_ms"] == limits.latency_ms
    assert len(obj["constraints"]["ties"]) == 12
    assert [layer["name"] for layer in obj["layers"]] == list(problem.layers)
    assert set(obj["layers"][0]) == {"name", "wbits", "abits"}
    assert len(obj["options"]) == len(problem)
    assert set(obj["options"][0]) >= {"layer", "wbits", "abits", "sensitivity", "latency_cycles", "size_bits", "bops"}
    assert set(obj["predicted"]) == {"latency_ms", "size_mb", "bops", "energy_mj"}  # energy_mj: an addition (#16)
    assert obj["predicted"]["latency_ms"] <= limits.latency_ms * (1 + 1e-9)
    plan = allocation.plan()
    assert set(plan["layers"]) == set(problem.layers)
    assert all(set(bits) == {"wbits", "abits"} for bits in plan["layers"].values())


def test_pareto_front_points_are_each_optimal_and_monotone() -> None:
    rng = np.random.default_rng(11)
    problem = random_problem(rng, layers=7, choices=4, ties=1)
    limits = Limits(size_mb=float(sum(problem.size_bits[r].max() for r in problem.choice_rows)) / 8e6 * 0.8 + 1e-6)
    front = pareto_front(problem, points=8, limits=limits)
    frame = front.to_frame()
    assert len(frame) == 8 and (frame["status"] == "optimal").all()
    assert (np.diff(frame["objective"]) <= 1e-12).all()  # more time never costs accuracy
    assert (frame["latency_ms"] <= frame["latency_budget_ms"] * (1 + 1e-9)).all()
    for budget, allocation in zip(front.budgets_ms, front.allocations, strict=True):
        point = Limits(latency_ms=budget, size_mb=limits.size_mb)
        assert allocation.objective == pytest.approx(brute_force(problem, point), rel=1e-9, abs=1e-12)
    assert frame["objective"].iloc[-1] == pytest.approx(allocate(problem, limits).objective, rel=1e-9)


def test_pareto_front_of_an_infeasible_problem_says_why() -> None:
    front = pareto_front(two_layer_problem(), points=5, limits=Limits(size_mb=1.0))
    assert front.budgets_ms == ()
    assert front.allocations[0].status == "infeasible"
    assert "size 1 MB cannot be met" in front.allocations[0].message
    too_fast = pareto_front(two_layer_problem(), points=5, limits=Limits(latency_ms=0.1))
    assert too_fast.budgets_ms == () and too_fast.allocations[0].status == "infeasible"
    assert too_fast.allocations[0].message == "latency 0.1 ms cannot be met; the fastest plan takes 0.2 ms"
    slow_is_better = two_layer_problem().with_sensitivity(
        pd.DataFrame([("a", 8, 8, 1.0), ("a", 2, 8, 0.0)], columns=["layer", "wbits", "abits", "sensitivity"]),
        partial=True,
    )
    assert pareto_front(slow_is_better, points=3).budgets_ms == pytest.approx((0.2, 0.35, 0.5))
    capped = pareto_front(slow_is_better, points=3, limits=Limits(latency_ms=0.4))
    assert capped.budgets_ms == pytest.approx((0.2, 0.3, 0.4))
    assert [a.objective for a in capped.allocations] == pytest.approx([1.5, 1.5, 1.5])
    with pytest.raises(InputError, match="points=1"):
        pareto_front(two_layer_problem(), points=1)


# ---- refinement -------------------------------------------------------------------------------------------------


def test_refinement_resolves_until_the_plan_is_stable() -> None:
    rng = np.random.default_rng(5)
    problem = random_problem(rng, layers=6, choices=4)
    limits = Limits(latency_ms=problem.cycles_to_ms(problem.fixed_cycles + 600 * 6))
    rescored = problem.to_frame()[["layer", "wbits", "abits"]].assign(
        sensitivity=lambda f: 1.0 / (f["wbits"] * f["abits"]) + rng.random(len(f)) * 1e-3
    )
    seen: list[dict] = []

    def rescore(plan: dict) -> pd.DataFrame:
        seen.append(plan)
        return rescored

    direct = allocate(problem, limits)
    refined = allocate(problem, limits, refine=rescore)
    expected = allocate(problem.with_sensitivity(rescored), limits)
    assert seen[0] == direct.plan()
    assert refined.chosen == expected.chosen and refined.objective == pytest.approx(expected.objective)
    # the first re-solve changes the plan (other scores), the second finds it unchanged
    assert direct.chosen != expected.chosen and refined.refinements == 2 and len(seen) == 2


def test_refinement_stops_after_max_rounds_when_the_plan_keeps_moving() -> None:
    problem = two_layer_problem()
    calls = []

    def flip(plan: dict) -> pd.DataFrame:
        calls.append(plan)
        a = plan["layers"]["a"]["wbits"]
        # make the chosen option of layer a the worse one every time
        return pd.DataFrame(
            [
                {"layer": "a", "wbits": 8, "abits": 8, "sensitivity": 2.0 if a == 8 else 0.0},
                {"layer": "a", "wbits": 2, "abits": 8, "sensitivity": 2.0 if a == 2 else 0.0},
            ]
        )

    refined = allocate(problem, Limits(), refine=flip, max_refinements=3)
    assert refined.refinements == 3 and len(calls) == 3 and refined.status == "optimal"


def test_problem_from_json_rebuilds_what_was_solved() -> None:
    """An allocate JSON (options, constraints, clock_mhz, fixed_cycles, fixed_energy_mj) re-solves alone, ties,
    the on-chip budget and the fixed terms included, to the same plan, latency and objective."""
    from allocator.ilp.model import problem_from_json

    rng = np.random.default_rng(7)
    solved = 0
    for index in range(10):
        base = random_problem(rng, layers=5, choices=6, ties=2)
        frame = base.to_frame()
        frame["energy_mj"] = rng.random(len(frame))
        problem = Problem.from_frame(
            frame,
            clock_mhz=base.clock_mhz,
            layers=base.layers,
            fixed_cycles=base.fixed_cycles + 50,
            onchip_capacity_bits=base.onchip_capacity_bits,
            ties=base.ties,
            fixed_energy_mj=0.25,
        )
        free = allocate(problem)
        if not free.ok:  # random ties can contradict each other
            continue
        loose = free.predicted
        limits = Limits(latency_ms=loose.latency_ms * 1.05, energy_mj=loose.energy_mj * 1.5, onchip=index % 2 == 1)
        first = allocate(problem, limits)
        if not first.ok:
            continue
        solved += 1
        obj = json.loads(json.dumps(first.to_json()))
        obj.update(clock_mhz=problem.clock_mhz, fixed_cycles=problem.fixed_cycles, fixed_energy_mj=0.25)
        rebuilt, rebuilt_limits = problem_from_json(obj)
        assert rebuilt.fixed_cycles == problem.fixed_cycles and rebuilt.ties == problem.ties
        again = allocate(rebuilt, rebuilt_limits)
        assert again.plan() == first.plan()
        assert again.predicted.latency_cycles == first.predicted.latency_cycles
        assert again.predicted.energy_mj == pytest.approx(first.predicted.energy_mj, rel=1e-12)
        assert again.objective == pytest.approx(first.objective, rel=1e-9)
    assert solved >= 5
    with pytest.raises(InputError, match=r"^x\.json: no 'clock_mhz'"):
        problem_from_json({"options": [], "constraints": {}}, where="x.json")
