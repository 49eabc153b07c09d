"""PMQ's Pareto-frontier search (allocator/ilp/pmq.py) against brute force and the ILP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from allocator.ilp.model import Allocation, Limits, allocate
from allocator.ilp.pmq import pareto_allocate
from allocator.ilp.problem import Problem, Tie
from sim.errors import InputError
from tests.allocator.test_ilp import brute_force, random_limits, random_problem


def _no_ties(problem: Problem) -> Problem:
    return Problem.from_frame(
        problem.to_frame(),
        clock_mhz=problem.clock_mhz,
        layers=list(problem.layers),
        fixed_cycles=problem.fixed_cycles,
        onchip_capacity_bits=problem.onchip_capacity_bits,
    )


@pytest.mark.parametrize("seed", range(40))
def test_one_latency_limit_reaches_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = _no_ties(random_problem(rng, layers=int(rng.integers(1, 6)), choices=4))
    lows = sum(problem.latency_cycles[r].min() for r in problem.choice_rows)
    highs = sum(problem.latency_cycles[r].max() for r in problem.choice_rows)
    budget = problem.fixed_cycles + lows + rng.uniform(-0.1, 1.0) * (highs - lows)
    limits = Limits(latency_ms=problem.cycles_to_ms(budget))
    best = brute_force(problem, limits)
    found = pareto_allocate(problem, limits)
    if best is None:
        assert found.status == "infeasible" and "latency" in found.message
        return
    assert found.status == "optimal"
    assert found.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert found.predicted is not None and found.predicted.latency_cycles <= budget * (1 + 1e-9)
    assert len(found.chosen) == len(problem.layers)


@pytest.mark.parametrize("seed", range(40))
def test_several_limits_give_a_feasible_plan_no_better_than_the_optimum(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    problem = _no_ties(random_problem(rng, layers=int(rng.integers(1, 6)), choices=4))
    limits = random_limits(rng, problem)
    best = brute_force(problem, limits)
    found = allocate(problem, limits, method="pmq-pareto")
    if best is None:
        assert found.status == "infeasible"
        return
    if found.status == "infeasible":  # the union of per-cost frontiers may drop every feasible plan: say so
        pytest.fail(f"Pareto search found no plan where brute force found Ω={best}")
    assert found.objective is not None and found.objective >= best * (1 - 1e-9) - 1e-12
    # the plan it returns meets every limit
    assert brute_force(_restricted(problem, found), limits) == pytest.approx(found.objective)
    active = sum(x is not None for x in (limits.latency_ms, limits.size_mb, limits.bops)) + limits.onchip
    assert found.status == ("optimal" if active <= 1 else "feasible")


def _restricted(problem: Problem, allocation: Allocation) -> Problem:
    """The problem with each layer's choices cut to the allocation's: brute force then scores exactly that plan."""
    chosen = {(c.layer, c.wbits, c.abits) for c in allocation.chosen}
    frame = problem.to_frame()
    keep = [key in chosen for key in zip(frame["layer"], frame["wbits"], frame["abits"], strict=True)]
    return Problem.from_frame(
        frame[keep].reset_index(drop=True),
        clock_mhz=problem.clock_mhz,
        layers=list(problem.layers),
        fixed_cycles=problem.fixed_cycles,
        onchip_capacity_bits=problem.onchip_capacity_bits,
    )


def _three_layers() -> Problem:
    rows = []
    # per layer: (wbits, Ω, cycles); 8 bits is slow and safe, 2 bits fast and damaging
    for name, omegas in (("a", (0.0, 1.0, 9.0)), ("b", (0.0, 0.5, 2.0)), ("c", (0.0, 3.0, 4.0))):
        for (bits, cycles), omega in zip(((8, 100), (4, 60), (2, 40)), omegas, strict=True):
            costs = {"latency_cycles": cycles, "size_bits": bits * 10, "bops": bits * 80, "onchip_bits": bits * 10}
            rows.append({"layer": name, "wbits": bits, "abits": 8, "sensitivity": omega, **costs})
    return Problem.from_frame(pd.DataFrame(rows), clock_mhz=1.0, layers=["a", "b", "c"], fixed_cycles=0)


def test_pinned_plan_on_a_hand_made_problem() -> None:
    problem = _three_layers()
    # 220 cycles = 0.22 ms at 1 MHz: the two cheapest cuts are b to 2 bits (-60 cycles, +2.0) and a or b to 4
    # bits (-40, +1.0 / +0.5); 300 - 220 = 80 cycles must go: b at 2 bits and a at 4 bits costs 3.0, b at 4 and
    # a at 4 costs 1.5 for exactly -80
    found = pareto_allocate(problem, Limits(latency_ms=0.22))
    assert {c.layer: c.wbits for c in found.chosen} == {"a": 4, "b": 4, "c": 8}
    assert found.objective == pytest.approx(1.5)
    assert found.predicted is not None and found.predicted.latency_cycles == 220


def test_no_limit_takes_each_layers_least_omega_choice() -> None:
    found = pareto_allocate(_three_layers())
    assert found.status == "optimal" and found.objective == 0.0
    assert all(c.wbits == 8 for c in found.chosen)


def test_impossible_limit_is_infeasible_with_the_reason() -> None:
    found = pareto_allocate(_three_layers(), Limits(latency_ms=0.1))
    assert found.status == "infeasible" and "latency" in found.message
    with pytest.raises(InputError, match="latency"):
        found.check()


def test_ties_are_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="cannot hold bit ties"):
        pareto_allocate(_three_layers(), Limits(ties=(Tie.of("a", "b", field="wbits"),)))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(InputError, match="unknown allocation method 'greedy'"):
        allocate(_three_layers(), method="greedy")  # type: ignore[arg-type]
