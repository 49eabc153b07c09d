"""Exact minimum-Ω plans under one budget: the multiple-choice knapsack solved by a Pareto-frontier dynamic program.

With one budget (latency, size, BOPs or energy) and no ties, the ILP of ``allocator.ilp.model`` is a multiple-choice
knapsack: pick one option per layer, minimise Σ Ω under Σ cost ≤ budget. The dynamic program keeps, after
layer i, every partial plan of layers 0..i that no other partial plan beats on both cost and Ω (Nemhauser and
Ullmann's list algorithm):

    F_0 = {(0, 0)}
    F_i = nondominated{ (c + cost[i,j], w + Ω[i,j]) : (c, w) ∈ F_{i-1}, j ∈ C_i }

A partial plan dominated at layer i stays dominated whatever the later layers add, so F_L holds an optimal
plan for *every* budget at once: the one of largest cost ≤ budget (costs rise and Ω falls along the front).
That is why a sweep computes one front per design and answers each of its budgets by a binary search —
every answer is optimal by construction, not to a solver gap. Partial plans that cannot meet the largest
budget asked even with the cheapest choices left are dropped as they appear (``max_cost``).

Ω sums are floating point; two plans whose Ω differ only by rounding are resolved towards the cheaper one, so
the DP's objective equals the ILP's to about 1e-12 relative (the ILP itself is solved to a 1e-9 gap).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from allocator.ilp.model import _BUDGET_SLACK, _DESCRIBE, Allocation, Limits, _allocation, _budgets, _pair
from allocator.ilp.problem import Problem

__all__ = ["Frontier", "Quantity", "frontier", "single_budget", "solve_single_budget"]

Quantity = Literal["latency", "size", "bops", "energy"]


@dataclass(frozen=True, eq=False)
class Frontier:
    """Every nondominated plan of a problem for one cost: ``cost`` rising, ``omega`` strictly falling.

    ``cost`` is in the option table's units (cycles without the fixed vector cycles, bits, bit operations).
    ``parents[i]``/``rows[i]`` lead from a state after layer i to its state after layer i−1 and the option row
    it took, so ``plan_rows(k)`` rebuilds plan k without storing whole plans.
    """

    quantity: str
    cost: np.ndarray
    omega: np.ndarray
    parents: tuple[np.ndarray, ...]
    rows: tuple[np.ndarray, ...]
    seconds: float

    def __len__(self) -> int:
        return len(self.cost)

    def best_index(self, budget: float) -> int:
        """Index of the minimum-Ω plan with cost ≤ budget (with the ILP's 1e-9 relative slack); −1 if none."""
        rhs = budget + _BUDGET_SLACK * abs(budget)
        return int(np.searchsorted(self.cost, rhs, side="right")) - 1

    def plan_rows(self, index: int) -> np.ndarray:
        """Option rows (one per layer, in layer order) of plan ``index``."""
        chosen = np.empty(len(self.rows), dtype=np.int64)
        state = index
        for layer in range(len(self.rows) - 1, -1, -1):
            chosen[layer] = self.rows[layer][state]
            state = self.parents[layer][state]
        return chosen


def _cost(problem: Problem, quantity: str) -> np.ndarray:
    costs = {
        "latency": problem.latency_cycles, "size": problem.size_bits, "bops": problem.bops, "energy": problem.energy_mj
    }  # fmt: skip
    return costs[quantity]


def _undominated(rows: np.ndarray, cost: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """A layer's options that no other option of it beats on both cost and Ω (ties: the first in row order).

    A plan using a dominated option is matched, at no more cost and no more Ω, by one using its dominator,
    so dropping them keeps every optimum's value.
    """
    order = rows[np.lexsort((omega[rows], cost[rows]))]
    best = np.inf
    keep = []
    for row in order.tolist():
        if omega[row] < best:
            keep.append(row)
            best = omega[row]
    return np.array(sorted(keep), dtype=np.int64)


def frontier(problem: Problem, quantity: Quantity, *, max_cost: float = math.inf) -> Frontier:
    """The nondominated (cost, Ω) plans of ``problem`` for ``quantity``, without plans costing more than
    ``max_cost`` (option-table units). Exact; O(Σ_i |F_{i-1}|·|C_i| log) time."""
    began = time.perf_counter()
    cost_all = np.asarray(_cost(problem, quantity), dtype=np.float64)
    omega_all = np.asarray(problem.sensitivity, dtype=np.float64)
    groups = problem.choice_rows
    cheapest = np.array([cost_all[rows].min() for rows in groups])
    # cheapest cost of the layers after layer i, so a partial plan that cannot fit is dropped at once
    rest = np.concatenate([np.cumsum(cheapest[::-1])[::-1][1:], [0.0]])
    cost = np.zeros(1)
    omega = np.zeros(1)
    parents: list[np.ndarray] = []
    rows_kept: list[np.ndarray] = []
    for layer, rows in enumerate(groups):
        rows = _undominated(rows, cost_all, omega_all)
        cand_cost = (cost[:, None] + cost_all[rows][None, :]).ravel()
        cand_omega = (omega[:, None] + omega_all[rows][None, :]).ravel()
        parent = np.repeat(np.arange(len(cost)), len(rows))
        row = np.tile(rows, len(cost))
        if math.isfinite(max_cost):
            fits = cand_cost + rest[layer] <= max_cost + _BUDGET_SLACK * abs(max_cost)
            cand_cost, cand_omega, parent, row = cand_cost[fits], cand_omega[fits], parent[fits], row[fits]
        order = np.argsort(cand_cost, kind="stable")
        cand_cost, cand_omega = cand_cost[order], cand_omega[order]
        # keep a plan only if its Ω is below that of every cheaper (or equally cheap, earlier) plan ...
        running = np.minimum.accumulate(cand_omega)
        keep = np.empty(len(order), dtype=bool)
        if len(order):
            keep[0] = True
            keep[1:] = cand_omega[1:] < running[:-1]
        kept = np.flatnonzero(keep)
        # ... and of equally cheap plans only the last kept, which has the least Ω
        last = np.ones(len(kept), dtype=bool)
        last[:-1] = cand_cost[kept[1:]] != cand_cost[kept[:-1]]
        kept = kept[last]
        cost, omega = cand_cost[kept], cand_omega[kept]
        parents.append(parent[order][kept])
        rows_kept.append(row[order][kept])
    return Frontier(quantity, cost, omega, tuple(parents), tuple(rows_kept), time.perf_counter() - began)


def single_budget(problem: Problem, limits: Limits) -> Quantity | None:
    """The one budgeted quantity when the DP applies to ``limits`` (exactly one of latency/size/BOPs/energy, no
    on-chip limit, no ties), else None (solve with the ILP)."""
    if problem.ties or limits.ties or limits.onchip:
        return None
    budgets = (
        ("latency", limits.latency_ms), ("size", limits.size_mb), ("bops", limits.bops), ("energy", limits.energy_mj)
    )  # fmt: skip
    active = [name for name, value in budgets if value is not None]
    return active[0] if len(active) == 1 else None  # type: ignore[return-value]


def solve_single_budget(problem: Problem, limits: Limits, front: Frontier | None = None) -> Allocation:
    """The ILP's answer for a one-budget ``limits`` (see ``single_budget``), from the front (built if not given).

    Status "optimal" with the minimum-Ω plan, or "infeasible" with the ILP's one-line message naming the limit
    and the cheapest any plan reaches.
    """
    quantity = single_budget(problem, limits)
    if quantity is None:
        raise ValueError("solve_single_budget needs exactly one latency/size/bops limit and no ties or on-chip limit")
    began = time.perf_counter()
    budget = _budgets(problem, limits)[quantity]
    if front is None or front.quantity != quantity:
        front = frontier(problem, quantity, max_cost=budget)
    index = front.best_index(budget)
    if index < 0:
        message = _infeasible_message(problem, limits, quantity)
        return Allocation("infeasible", None, (), None, limits, problem, message, 0, time.perf_counter() - began)
    rows = front.plan_rows(index)
    return _allocation(problem, limits, "optimal", rows, time.perf_counter() - began)


def _infeasible_message(problem: Problem, limits: Limits, quantity: str) -> str:
    """``explain_infeasible``'s wording for one limit, from the cheapest plan (no solver call)."""
    cheapest = float(sum(_cost(problem, quantity)[rows].min() for rows in problem.choice_rows))
    if quantity == "latency":
        best = problem.cycles_to_ms(problem.fixed_cycles + cheapest)
        limit = limits.latency_ms
    elif quantity == "energy":
        best, limit = problem.fixed_energy_mj + cheapest, limits.energy_mj
    elif quantity == "size":
        best, limit = cheapest / 8e6, limits.size_mb
    else:
        best, limit = cheapest / 1e9, limits.bops
    label, unit, phrase = _DESCRIBE[quantity]
    shown_limit, shown_best = _pair(float(limit), best)  # type: ignore[arg-type]
    return f"{label} {shown_limit} {unit} cannot be met; {phrase} {shown_best} {unit}"
