"""Per-layer bit allocation as an integer linear program (HAWQ-V3's formulation), solved by CBC via python-mip.

    I            layers;   C_i  bit choices (wbits, abits) of layer i;   x[i,c] ∈ {0, 1}
    minimise     Σ_i Σ_{c∈C_i} Ω[i,c] · x[i,c]                                  (sensitivity)
    subject to   Σ_{c∈C_i} x[i,c] = 1                              ∀ i ∈ I      (one choice per layer)
                 F + Σ_i Σ_c lat[i,c] · x[i,c] ≤ L                               (latency, cycles)
                 Σ_i Σ_c size[i,c] · x[i,c] ≤ S                                  (model size, bits)
                 Σ_i Σ_c bops[i,c] · x[i,c] ≤ B                                  (bit operations)
                 Σ_i Σ_c onchip[i,c] · x[i,c] ≤ M                                (resident weights, bits)
                 F_E + Σ_i Σ_c energy[i,c] · x[i,c] ≤ E                          (dynamic energy, mJ)
                 Σ_{c: f(c)=v} x[i,c] = Σ_{c: g(c)=v} x[j,c]       ∀ ties (i.f = j.g), values v

F is the bit-independent vector-unit time, F_E the bit-independent energy of the unfused vector operators.
Budgets are met to one part in 10^9 (floating point).
``pareto_front`` sweeps L (ε-constraint) and solves every point to proven optimality.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import mip
import numpy as np
import pandas as pd

from allocator.ilp.problem import Problem, Tie
from sim.errors import InputError

__all__ = [
    "METHODS",
    "Allocation",
    "Choice",
    "InfeasibleError",
    "Limits",
    "ParetoFront",
    "Predicted",
    "allocate",
    "build_model",
    "explain_infeasible",
    "pareto_front",
    "problem_from_json",
]

Quantity = Literal["sensitivity", "latency", "size", "bops", "onchip", "energy"]
Rescore = Callable[[dict[str, Any]], pd.DataFrame]
Method = Literal["ilp", "pmq-pareto"]
METHODS: tuple[str, ...] = ("ilp", "pmq-pareto")
"""``allocate``'s solvers: the ILP, or PMQ's Pareto-frontier search (``allocator.ilp.pmq``)."""

# relative slack on every budget, so a budget equal to a plan's own cost (as the Pareto sweep produces) is met
# despite the ms <-> cycles round trip
_BUDGET_SLACK = 1e-9
# CBC stops at a relative gap of 1e-4 by default; these make "optimal" mean optimal to ~1e-9 of the objective
_MIP_GAP = 1e-9
_MIP_GAP_ABS = 1e-12
# CBC's tolerances on reduced costs are absolute (~1e-6): with Ω scaled to a largest coefficient of 1, it called
# 4 of 247 random brute-forced problems "optimal" up to 1.6e-3 above the optimum; scaled to 1e6, none (1e4: none)
_OBJECTIVE_MAX = 1e6


class InfeasibleError(InputError):
    """No plan meets the limits. A ``sim.errors.InputError``, so the CLI exits with status 2 on it."""


@dataclass(frozen=True)
class Limits:
    """The user's budgets; None means unlimited.

    ``latency_ms`` (ms, vector-unit time included), ``size_mb`` (weights, 10^6 bytes), ``bops`` (10^9 bit
    operations), ``onchip`` (all weights resident in the target's BRAM/URAM), ``ties`` (added to the problem's),
    ``energy_mj`` (mJ of dynamic energy per inference, vector operators included).
    """

    latency_ms: float | None = None
    size_mb: float | None = None
    bops: float | None = None
    onchip: bool = False
    ties: tuple[Tie, ...] = ()
    energy_mj: float | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "size_mb", "bops", "energy_mj"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise InputError(f"limit {name}={value}; must be a positive number")
        object.__setattr__(self, "ties", tuple(Tie.parse(tie) for tie in self.ties))

    def dataflow_preference(self) -> str:
        """What an array that switches dataflow per layer minimises per option (``build_problem(prefer=)``):
        ``"energy_mj"`` when energy is the only budget on time or energy, else ``"cycles"``."""
        return "energy_mj" if self.energy_mj is not None and self.latency_ms is None else "cycles"

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "size_mb": self.size_mb,
            "bops": self.bops,
            "onchip": self.onchip,
            "ties": [str(tie) for tie in self.ties],
            "energy_mj": self.energy_mj,
        }


@dataclass(frozen=True)
class Choice:
    """The bits chosen for one layer."""

    layer: str
    wbits: int
    abits: int
    abits_low: int = 0  # a patch-wise choice: bits of the low token group (0: layer-wise)
    token_fraction: float = 0.0  # a patch-wise choice: fraction of tokens at ``abits``
    dataflow: str = ""  # on an array that switches dataflow per layer: the layer's; else ""

    def bits(self) -> dict[str, Any]:
        """The plan entry: wbits, abits, for a patch-wise choice abits_low and token_fraction, and on an array that
        switches dataflow per layer the layer's dataflow."""
        entry: dict[str, Any] = {"wbits": self.wbits, "abits": self.abits}
        if self.abits_low:
            entry.update(abits_low=self.abits_low, token_fraction=self.token_fraction)
        if self.dataflow:
            entry["dataflow"] = self.dataflow
        return entry


@dataclass(frozen=True)
class Predicted:
    """A plan's costs: ``latency_ms`` (ms), ``size_mb`` (10^6 bytes of weights), ``bops`` (10^9 bit operations),
    ``onchip_bits`` (resident weight bits), ``latency_cycles`` (cycles, vector-unit time included),
    ``energy_mj`` (mJ of dynamic energy, vector operators included)."""

    latency_ms: float
    size_mb: float
    bops: float
    onchip_bits: float
    latency_cycles: float
    energy_mj: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"latency_ms": self.latency_ms, "size_mb": self.size_mb, "bops": self.bops, "energy_mj": self.energy_mj}


@dataclass(frozen=True)
class Allocation:
    """The solver's answer. ``status``: "optimal" (proven), "feasible" (a plan, optimality not proven within the
    time limit), "infeasible" (``message`` names the limit that cannot be met), or "no_solution"/"error".
    ``objective`` is Σ Ω of the chosen options; ``refinements`` counts re-scoring rounds."""

    status: str
    objective: float | None
    chosen: tuple[Choice, ...]
    predicted: Predicted | None
    limits: Limits
    problem: Problem = field(repr=False)
    message: str = ""
    refinements: int = 0
    solve_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "feasible")

    def check(self) -> Allocation:
        """Return self, or raise InfeasibleError (→ CLI exit status 2) when there is no plan."""
        if not self.ok:
            raise InfeasibleError(self.message or f"no plan: solver status {self.status}")
        return self

    def plan(self) -> dict[str, Any]:
        """The bit-plan JSON object of the interface contract (what ``--bits PLAN.json`` reads)."""
        self.check()
        return {
            "model": self.problem.model,
            "layers": {c.layer: c.bits() for c in self.chosen},
        }

    def to_frame(self) -> pd.DataFrame:
        """The chosen option of every layer with its sensitivity and costs."""
        frame = self.problem.to_frame()
        chosen = {(c.layer, c.wbits, c.abits, c.abits_low) for c in self.chosen}
        keep = [self.problem.option_key(row) in chosen for row in range(len(self.problem))]
        return frame[keep].reset_index(drop=True)

    def to_json(self) -> dict[str, Any]:
        """The contract's ``allocate`` object: status, objective, constraints, layers, options, predicted."""
        options = self.problem.to_frame()
        return {
            "status": self.status,
            "objective": self.objective,
            "message": self.message or None,
            "constraints": {
                **self.limits.to_json(),
                "ties": [str(tie) for tie in (*self.problem.ties, *self.limits.ties)],
                "onchip_capacity_bits": self.problem.onchip_capacity_bits,
            },
            "layers": [{"name": c.layer, **c.bits()} for c in self.chosen],
            "options": [
                {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
                for row in options.to_dict("records")
            ],
            "predicted": self.predicted.to_json() if self.predicted else None,
            "refinements": self.refinements,
        }


def problem_from_json(obj: dict[str, Any], where: str = "allocate JSON") -> tuple[Problem, Limits]:
    """The problem and limits an ``allocate --json`` object (``Allocation.to_json`` plus the pipeline's
    ``clock_mhz``, ``fixed_cycles`` and ``fixed_energy_mj``) was solved with, rebuilt from its ``options`` and
    ``constraints`` alone: ``allocate(*problem_from_json(obj))`` gives the same plan, latency and energy. Raises
    ``InputError`` naming the missing key or bad value, with ``where`` (e.g. the file name)."""
    for key in ("options", "constraints", "clock_mhz", "fixed_cycles"):
        if key not in obj:
            raise InputError(f"{where}: no {key!r}; it needs options, constraints, clock_mhz and fixed_cycles")
    options = obj["options"]
    if not isinstance(options, list) or not options:
        raise InputError(f"{where}: 'options' must be a non-empty list of option rows")
    constraints = obj["constraints"]
    if not isinstance(constraints, dict):
        raise InputError(f"{where}: 'constraints' must be an object")
    frame = pd.DataFrame(options)
    ties = []
    for text in constraints.get("ties") or []:
        members = []
        for member in str(text).split(" = "):
            layer, dot, bit_field = member.rpartition(".")
            if not dot:
                raise InputError(f"{where}: tie {text!r}: expected layer.field = layer.field")
            members.append((layer, bit_field))
        ties.append(Tie(tuple(members)))  # type: ignore[arg-type]
    problem = Problem.from_frame(
        frame,
        clock_mhz=float(obj["clock_mhz"]),
        fixed_cycles=int(obj["fixed_cycles"]),
        onchip_capacity_bits=constraints.get("onchip_capacity_bits"),
        ties=ties,
        model=str(obj.get("model", "")),
        fixed_energy_mj=float(obj.get("fixed_energy_mj", 0.0)),
    )
    limits = Limits(
        latency_ms=constraints.get("latency_ms"),
        size_mb=constraints.get("size_mb"),
        bops=constraints.get("bops"),
        onchip=bool(constraints.get("onchip", False)),
        energy_mj=constraints.get("energy_mj"),
    )
    return problem, limits


def _quantity(problem: Problem, quantity: Quantity) -> np.ndarray:
    return {
        "sensitivity": problem.sensitivity,
        "latency": problem.latency_cycles,
        "size": problem.size_bits,
        "bops": problem.bops,
        "onchip": problem.onchip_bits,
        "energy": problem.energy_mj,
    }[quantity]


def _budgets(problem: Problem, limits: Limits) -> dict[str, float]:
    """Right-hand sides of the active budget constraints, in the option table's units."""
    budgets: dict[str, float] = {}
    if limits.latency_ms is not None:
        budgets["latency"] = problem.ms_to_cycles(limits.latency_ms) - problem.fixed_cycles
    if limits.size_mb is not None:
        budgets["size"] = limits.size_mb * 8e6
    if limits.bops is not None:
        budgets["bops"] = limits.bops * 1e9
    if limits.energy_mj is not None:
        budgets["energy"] = limits.energy_mj - problem.fixed_energy_mj
    if limits.onchip:
        if problem.onchip_capacity_bits is None:
            raise InputError("limit onchip: the problem has no on-chip capacity (build it from a target)")
        budgets["onchip"] = float(problem.onchip_capacity_bits)
    return budgets


def build_model(problem: Problem, limits: Limits = Limits(), *, minimise: Quantity = "sensitivity") -> mip.Model:
    """The ILP for ``problem`` under ``limits`` (not solved). Variable ``x_{r}`` is option row r of the problem.

    ``minimise`` picks the objective: Ω (the allocation) or one cost (to find the best any plan can do).
    The objective is scaled to a largest coefficient of 10^6 so CBC's absolute tolerances mean the same at any
    scale of Ω.
    """
    ties = (*problem.ties, *limits.ties)
    problem.check_ties(limits.ties)
    budgets = _budgets(problem, limits)

    model = mip.Model(name="bit_allocation", sense=mip.MINIMIZE, solver_name=mip.CBC)
    model.verbose = 0
    model.max_mip_gap = _MIP_GAP
    model.max_mip_gap_abs = _MIP_GAP_ABS
    I = range(len(problem.layers))
    C = problem.choice_rows
    x = [model.add_var(name=f"x_{r}", var_type=mip.BINARY) for r in range(len(problem))]
    omega = _quantity(problem, minimise)
    scale = _OBJECTIVE_MAX / (float(omega.max()) or 1.0)

    model.objective = mip.minimize(mip.xsum(float(omega[r] * scale) * x[r] for r in range(len(problem))))
    for i in I:
        model += mip.xsum(x[r] for r in C[i]) == 1, f"one_choice_{i}"
    for name, budget in budgets.items():
        cost = _quantity(problem, name)  # type: ignore[arg-type]
        rhs = budget + _BUDGET_SLACK * abs(budget)
        model += mip.xsum(float(cost[r]) * x[r] for r in range(len(problem)) if cost[r]) <= rhs, name
    index = {name: i for i, name in enumerate(problem.layers)}
    for t, tie in enumerate(ties):
        for m, ((layer_a, field_a), (layer_b, field_b)) in enumerate(itertools.pairwise(tie.members)):
            i, j = index[layer_a], index[layer_b]
            values_i, values_j = problem.tie_values(i, field_a), problem.tie_values(j, field_b)
            for v, value in enumerate(sorted(set(values_i) | set(values_j))):
                model += (
                    mip.xsum(x[r] for r, b in zip(C[i], values_i, strict=True) if b == value)
                    == mip.xsum(x[r] for r, b in zip(C[j], values_j, strict=True) if b == value),
                    f"tie_{t}_{m}_{v}",
                )
    return model


_STATUS = {
    mip.OptimizationStatus.OPTIMAL: "optimal",
    mip.OptimizationStatus.FEASIBLE: "feasible",
    mip.OptimizationStatus.INFEASIBLE: "infeasible",
    mip.OptimizationStatus.INT_INFEASIBLE: "infeasible",
    mip.OptimizationStatus.NO_SOLUTION_FOUND: "no_solution",
}


def _solve(
    problem: Problem,
    limits: Limits,
    *,
    minimise: Quantity = "sensitivity",
    time_limit_s: float | None = None,
) -> tuple[str, np.ndarray | None, float]:
    """Solve; return (status, chosen option rows or None, wall seconds)."""
    import time

    began = time.perf_counter()
    model = build_model(problem, limits, minimise=minimise)
    status = model.optimize(max_seconds=time_limit_s if time_limit_s is not None else math.inf)
    name = _STATUS.get(status, "error")
    rows = None
    if name in ("optimal", "feasible"):
        values = np.array([v.x for v in model.vars], dtype=float)
        rows = np.flatnonzero(values > 0.5)
    return name, rows, time.perf_counter() - began


def _predict(problem: Problem, rows: np.ndarray) -> Predicted:
    latency_cycles = problem.fixed_cycles + float(problem.latency_cycles[rows].sum())
    return Predicted(
        latency_ms=problem.cycles_to_ms(latency_cycles),
        size_mb=float(problem.size_bits[rows].sum()) / 8e6,
        bops=float(problem.bops[rows].sum()) / 1e9,
        onchip_bits=float(problem.onchip_bits[rows].sum()),
        latency_cycles=latency_cycles,
        energy_mj=problem.fixed_energy_mj + float(problem.energy_mj[rows].sum()),
    )


def _allocation(
    problem: Problem, limits: Limits, status: str, rows: np.ndarray | None, seconds: float, refinements: int = 0
) -> Allocation:
    if rows is None:
        message = explain_infeasible(problem, limits) if status == "infeasible" else f"solver status {status}"
        return Allocation(status, None, (), None, limits, problem, message, refinements, seconds)
    chosen = tuple(
        Choice(
            *problem.option_key(r),  # type: ignore[misc]
            token_fraction=float(problem.token_fraction[r]),
            dataflow=str(problem.dataflow[r]),
        )
        for r in rows
    )
    objective = float(problem.sensitivity[rows].sum())
    return Allocation(status, objective, chosen, _predict(problem, rows), limits, problem, "", refinements, seconds)


def allocate(
    problem: Problem,
    limits: Limits = Limits(),
    *,
    refine: Rescore | None = None,
    max_refinements: int = 5,
    time_limit_s: float | None = 60.0,
    method: Method = "ilp",
) -> Allocation:
    """Minimum-Ω bits per layer under ``limits``; never raises for infeasible budgets (see ``Allocation.check``).

    ``method``: ``ilp`` (this module's ILP, CBC) or ``pmq-pareto`` (PMQ's layer-by-layer Pareto search,
    ``allocator.ilp.pmq.pareto_allocate``: exact under one limit, a feasible plan under several; no ties).
    ``refine`` (LampQ-style): ``rescore(plan) -> DataFrame[layer, wbits, abits, sensitivity]`` re-scores options
    around the chosen plan (rows it leaves out keep their score); the problem is re-solved until the plan stops
    changing or ``max_refinements`` rounds have run.
    """
    if method not in METHODS:
        raise InputError(f"unknown allocation method {method!r}; choose {' or '.join(METHODS)}")

    def solve(problem: Problem, refinements: int) -> Allocation:
        if method == "pmq-pareto":
            from allocator.ilp.pmq import pareto_allocate

            return replace(pareto_allocate(problem, limits), refinements=refinements)
        status, rows, seconds = _solve(problem, limits, time_limit_s=time_limit_s)
        return _allocation(problem, limits, status, rows, seconds, refinements)

    allocation = solve(problem, 0)
    if refine is None or not allocation.ok:
        return allocation
    for round_ in range(1, max_refinements + 1):
        problem = problem.with_sensitivity(refine(allocation.plan()), partial=True)
        previous, allocation = allocation, solve(problem, round_)
        if not allocation.ok or allocation.chosen == previous.chosen:
            break
    return allocation


_DESCRIBE = {
    "latency": ("latency", "ms", "the fastest plan takes"),
    "size": ("size", "MB", "the smallest plan is"),
    "bops": ("BOPs", "G", "the fewest any plan has is"),
    "onchip": ("on-chip weights", "Mbit", "the smallest plan needs"),
    "energy": ("energy", "mJ", "the least-energy plan takes"),
}


def _in_user_units(problem: Problem, quantity: str, total: float) -> float:
    """A plan total of ``quantity`` (option-table units) in the units its limit is given in."""
    if quantity == "latency":
        return problem.cycles_to_ms(problem.fixed_cycles + total)
    if quantity == "energy":
        return problem.fixed_energy_mj + total
    return {"size": total / 8e6, "bops": total / 1e9, "onchip": total / 1e6}[quantity]


def _limit_value(problem: Problem, limits: Limits, quantity: str) -> float:
    if quantity == "onchip":
        return (problem.onchip_capacity_bits or 0) / 1e6
    return {"latency": limits.latency_ms, "size": limits.size_mb, "bops": limits.bops, "energy": limits.energy_mj}[
        quantity
    ]  # type: ignore[return-value]


def _pair(limit: float, best: float) -> tuple[str, str]:
    """The two numbers formatted with enough digits to tell them apart."""
    for digits in range(3, 12):
        a, b = f"{limit:.{digits}g}", f"{best:.{digits}g}"
        if a != b:
            return a, b
    return f"{limit!r}", f"{best!r}"


def _limits_with(limits: Limits, keep: Sequence[str]) -> Limits:
    return Limits(
        latency_ms=limits.latency_ms if "latency" in keep else None,
        size_mb=limits.size_mb if "size" in keep else None,
        bops=limits.bops if "bops" in keep else None,
        onchip=limits.onchip and "onchip" in keep,
        ties=limits.ties,
        energy_mj=limits.energy_mj if "energy" in keep else None,
    )


def _describe_limit(problem: Problem, limits: Limits, quantity: str) -> str:
    label, unit, _ = _DESCRIBE[quantity]
    value = _limit_value(problem, limits, quantity)
    if quantity == "onchip":
        return f"on-chip capacity {value:.4g} {unit}"
    return f"{label} {value:g} {unit}"


def explain_infeasible(problem: Problem, limits: Limits) -> str:
    """One line naming the limit(s) no plan can meet and the best value a plan reaches.

    Each limit is tried alone (minimising its quantity under the ties), then each pair (minimising the second
    under the first), then all together.
    """
    active = list(_budgets(problem, limits))
    status, _, _ = _solve(problem, _limits_with(limits, []))
    if status == "infeasible":
        ties = "; ".join(str(t) for t in (*problem.ties, *limits.ties))
        return f"the ties cannot all hold together: {ties}"
    alone = []
    for quantity in active:
        status, rows, _ = _solve(problem, _limits_with(limits, []), minimise=quantity)  # type: ignore[arg-type]
        if rows is None:
            continue
        best = _in_user_units(problem, quantity, float(_quantity(problem, quantity)[rows].sum()))  # type: ignore[arg-type]
        label, unit, phrase = _DESCRIBE[quantity]
        limit = _limit_value(problem, limits, quantity)
        if best > limit * (1 + _BUDGET_SLACK):
            shown_limit, shown_best = _pair(limit, best)
            if quantity == "onchip":
                alone.append(f"weights cannot fit in {shown_limit} {unit} on chip; {phrase} {shown_best} {unit}")
            else:
                alone.append(f"{label} {shown_limit} {unit} cannot be met; {phrase} {shown_best} {unit}")
    if alone:
        return "; ".join(alone)
    pairs = []
    for a in active:
        for b in active:
            if a >= b:
                continue
            status, _, _ = _solve(problem, _limits_with(limits, [a, b]))
            if status != "infeasible":
                continue
            _, rows, _ = _solve(problem, _limits_with(limits, [a]), minimise=b)  # type: ignore[arg-type]
            label, unit, phrase = _DESCRIBE[b]
            detail = ""
            if rows is not None:
                best = _in_user_units(problem, b, float(_quantity(problem, b)[rows].sum()))  # type: ignore[arg-type]
                detail = f"; within {_describe_limit(problem, limits, a)} {phrase} {best:.4g} {unit}"
            pairs.append(
                f"{_describe_limit(problem, limits, a)} and {_describe_limit(problem, limits, b)} "
                f"cannot be met together{detail}"
            )
    if pairs:
        return "; ".join(pairs)
    return ", ".join(_describe_limit(problem, limits, q) for q in active) + " cannot all be met together"


@dataclass(frozen=True)
class ParetoFront:
    """Minimum Ω at each latency budget ε (ε-constraint); each point is an ``Allocation`` solved to optimality."""

    budgets_ms: tuple[float, ...]
    allocations: tuple[Allocation, ...]
    seconds: float

    def to_frame(self) -> pd.DataFrame:
        """One row per budget: latency_budget_ms, status, objective, latency_ms, size_mb, bops."""
        rows = []
        for budget, allocation in zip(self.budgets_ms, self.allocations, strict=True):
            p = allocation.predicted
            rows.append(
                {
                    "latency_budget_ms": budget,
                    "status": allocation.status,
                    "objective": allocation.objective,
                    "latency_ms": p.latency_ms if p else None,
                    "size_mb": p.size_mb if p else None,
                    "bops": p.bops if p else None,
                }
            )
        return pd.DataFrame(rows)


def pareto_front(
    problem: Problem, points: int = 20, limits: Limits = Limits(), *, time_limit_s: float | None = 60.0
) -> ParetoFront:
    """Ω-vs-latency front: ``points`` latency budgets evenly spaced from the fastest plan's latency to that of the
    minimum-Ω plan, each solved for minimum Ω under ``limits`` (a latency limit there caps the sweep)."""
    import time

    if points < 2:
        raise InputError(f"pareto_front: points={points}; need at least 2")
    began = time.perf_counter()
    others = replace(limits, latency_ms=None)
    status, fastest, _ = _solve(problem, others, minimise="latency", time_limit_s=time_limit_s)
    if fastest is None:
        allocation = _allocation(problem, others, status, None, 0.0)
        return ParetoFront((), (allocation,), time.perf_counter() - began)
    status, best, _ = _solve(problem, others, time_limit_s=time_limit_s)
    low = _predict(problem, fastest).latency_ms
    high = _predict(problem, best).latency_ms if best is not None else low
    if limits.latency_ms is not None:
        high = min(high, limits.latency_ms)
        if high < low:
            return ParetoFront((), (allocate(problem, limits, time_limit_s=time_limit_s),), time.perf_counter() - began)
    budgets = tuple(float(b) for b in np.linspace(low, high, points))
    allocations = []
    # each point is solved from scratch, so no point depends on another point's solution
    for budget in budgets:
        point = replace(limits, latency_ms=budget)
        status, rows, seconds = _solve(problem, point, time_limit_s=time_limit_s)
        allocations.append(_allocation(problem, point, status, rows, seconds))
    return ParetoFront(budgets, tuple(allocations), time.perf_counter() - began)
