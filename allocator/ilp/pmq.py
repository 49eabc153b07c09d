"""PMQ's Pareto-frontier bit allocation: grow plans layer by layer and keep only the non-dominated ones.

PMQ (arXiv 2305.06559) allocates bits on a Pareto frontier of sensitivity against cost; its code was not released.
The same group's HTQ code (github zkkli/HTQ, ``pareto_frontier.py``, commit 963fddce) builds it as a tree: every
partial plan over layers 1..i is extended by each bit choice of layer i+1, accumulating cost and perturbation,
and after each layer the extensions are sorted by each cost (model size, then BOPs) and those whose perturbation
is not below what a cheaper kept plan already reaches are pruned (with a 5 % window); the survivors of the two
sorts are united.

Here the costs are those of the problem table that are under a limit (latency, size, BOPs, energy, on-chip
bits), Ω is the sensitivity, and pruning is exact dominance along each limited cost (HTQ's 5 % window keeps a
superset of these). Partial plans that cannot meet a limit even with the cheapest choices for the remaining
layers are dropped. With one limit this dynamic programme over the (cost, Ω) frontier is exact: its plan has the
ILP's minimum Ω (``status="optimal"``). With several limits the union of per-cost frontiers can drop a plan the
ILP would keep, so the answer is a feasible plan, not a proven optimum (``status="feasible"``). No limit: each
layer's least-Ω choice. Ties between layers' bits are not expressible in this search (use the ILP).
"""

from __future__ import annotations

import time

import numpy as np

from allocator.ilp.model import Allocation, Limits, _allocation, _budgets, _quantity
from allocator.ilp.problem import Problem
from sim.errors import InputError

__all__ = ["pareto_allocate"]

# relative slack on budgets, as the ILP's (_BUDGET_SLACK in allocator.ilp.model)
_BUDGET_SLACK = 1e-9


def _frontier(cost: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Indices of the states no cheaper-or-equal state beats on Ω: sorted by cost then Ω, kept when Ω is below
    every Ω kept before it."""
    order = np.lexsort((omega, cost))
    sorted_omega = omega[order]
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(sorted_omega)[:-1]))
    return order[sorted_omega < best_before]


def pareto_allocate(problem: Problem, limits: Limits | None = None) -> Allocation:
    """Minimum-Ω plan under ``limits`` by PMQ's layer-by-layer Pareto search (module docstring). Returns an
    ``Allocation`` like ``allocate``'s (status "infeasible" with the reason when no plan meets the limits)."""
    limits = limits or Limits()
    if problem.ties or limits.ties:
        raise InputError("the Pareto search cannot hold bit ties between layers; use the ILP (--solver ilp)")
    began = time.perf_counter()
    budgets = _budgets(problem, limits)
    axes = list(budgets)
    costs = {axis: _quantity(problem, axis).astype(float) for axis in axes}  # type: ignore[arg-type]
    omega_rows = problem.sensitivity.astype(float)
    layers = problem.choice_rows
    # cheapest completion of layers i.. for every limited cost, to drop partial plans that cannot finish
    rest = {
        axis: np.concatenate((np.cumsum([c[rows].min() for rows in layers][::-1])[::-1], [0.0]))
        for axis, c in costs.items()
    }
    limit = {axis: budgets[axis] + _BUDGET_SLACK * abs(budgets[axis]) for axis in axes}

    state_cost = {axis: np.zeros(1) for axis in axes}
    state_omega = np.zeros(1)
    parents: list[np.ndarray] = []
    chosen_rows: list[np.ndarray] = []
    for i, rows in enumerate(layers):
        n_states, n_choices = len(state_omega), len(rows)
        omega = (state_omega[:, None] + omega_rows[rows][None, :]).ravel()
        cost = {axis: (state_cost[axis][:, None] + costs[axis][rows][None, :]).ravel() for axis in axes}
        parent = np.repeat(np.arange(n_states), n_choices)
        row = np.tile(rows, n_states)
        feasible = np.ones(len(omega), dtype=bool)
        for axis in axes:
            feasible &= cost[axis] + rest[axis][i + 1] <= limit[axis]
        keep = np.flatnonzero(feasible)
        if len(keep) == 0:
            return _allocation(problem, limits, "infeasible", None, time.perf_counter() - began)
        if axes:
            fronts = [keep[_frontier(cost[axis][keep], omega[keep])] for axis in axes]
            keep = np.unique(np.concatenate(fronts))
        else:
            keep = keep[[int(np.argmin(omega[keep]))]]
        state_omega = omega[keep]
        state_cost = {axis: cost[axis][keep] for axis in axes}
        parents.append(parent[keep])
        chosen_rows.append(row[keep])
    best = int(np.argmin(state_omega))
    plan = []
    for i in range(len(layers) - 1, -1, -1):
        plan.append(int(chosen_rows[i][best]))
        best = int(parents[i][best])
    status = "optimal" if len(axes) <= 1 else "feasible"
    return _allocation(problem, limits, status, np.array(sorted(plan)), time.perf_counter() - began)
