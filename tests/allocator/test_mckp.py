"""The exact one-budget DP (allocator/ilp/mckp.py) against brute force and the ILP, messages included."""

from __future__ import annotations

import numpy as np
import pytest
from test_ilp import brute_force, check_plan, random_problem, two_layer_problem

from allocator.ilp.mckp import frontier, single_budget, solve_single_budget
from allocator.ilp.model import Limits, allocate


def one_budget(rng: np.random.Generator, problem, kind: str) -> Limits:
    column = {"latency": problem.latency_cycles, "size": problem.size_bits, "bops": problem.bops}[kind]
    low = sum(column[r].min() for r in problem.choice_rows)
    high = sum(column[r].max() for r in problem.choice_rows)
    total = low + rng.uniform(-0.1, 1.0) * (high - low)
    if kind == "latency":
        return Limits(latency_ms=max(1e-9, problem.cycles_to_ms(problem.fixed_cycles + total)))
    if kind == "size":
        return Limits(size_mb=max(1e-12, total / 8e6))
    return Limits(bops=max(1e-12, total / 1e9))


@pytest.mark.parametrize("seed", [7])
def test_dp_equals_brute_force_and_the_ilp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    solved = infeasible = 0
    for _ in range(120):
        problem = random_problem(rng, layers=int(rng.integers(1, 8)), choices=4)
        limits = one_budget(rng, problem, str(rng.choice(["latency", "size", "bops"])))
        expected = brute_force(problem, limits)
        got = solve_single_budget(problem, limits)
        ilp = allocate(problem, limits)
        assert got.status == ilp.status
        if expected is None:
            assert got.status == "infeasible" and got.message == ilp.message
            infeasible += 1
            continue
        assert got.objective == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert got.objective == pytest.approx(ilp.objective, rel=1e-9, abs=1e-12)
        check_plan(problem, limits, got)
        solved += 1
    assert solved >= 50 and infeasible >= 5


def test_one_front_answers_every_budget() -> None:
    rng = np.random.default_rng(3)
    problem = random_problem(rng, layers=6, choices=4)
    front = frontier(problem, "latency")
    assert (np.diff(front.cost) > 0).all() and (np.diff(front.omega) < 0).all()
    for index in range(len(front)):
        budget_ms = problem.cycles_to_ms(problem.fixed_cycles + front.cost[index])
        limits = Limits(latency_ms=budget_ms)
        got = solve_single_budget(problem, limits, front)
        assert got.objective == pytest.approx(brute_force(problem, limits), rel=1e-12)


def test_the_dp_applies_to_one_budget_without_ties_only() -> None:
    problem = two_layer_problem()
    assert single_budget(problem, Limits(latency_ms=1.0)) == "latency"
    assert single_budget(problem, Limits(size_mb=1.0)) == "size"
    assert single_budget(problem, Limits(latency_ms=1.0, size_mb=1.0)) is None
    assert single_budget(problem, Limits(latency_ms=1.0, onchip=True)) is None
    assert single_budget(problem, Limits()) is None
    with pytest.raises(ValueError, match="exactly one"):
        solve_single_budget(problem, Limits())


def test_infeasible_message_is_the_ilps() -> None:
    problem = two_layer_problem()
    for limits in (Limits(latency_ms=0.01), Limits(size_mb=1.0)):
        got, ilp = solve_single_budget(problem, limits), allocate(problem, limits)
        assert got.status == ilp.status == "infeasible" and got.message == ilp.message
