"""Co-design points: each design point gets the minimum-Ω bit plan under its own budget, proven optimal.

Points of one design (everything but the budgets) share one problem table (one ``sim.cost_table``) and, for a
single budget, one exact Pareto front (``allocator.ilp.mckp``); each point's plan is then a binary search on
that front. Points with two or more budgets are solved by the ILP. Sensitivity scores are computed (proxy) or
read (table) once per model and worker, and shared by every point.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from allocator.sweep.batch import RESOURCES
from sim.target import Target
from sim.workload import Workload

__all__ = ["allocate_points", "design_key", "solve_point"]

_COSTS = (
    "cycles", "latency_ms", "ilp_latency_ms", "size_mb", "gbops", "energy_mj", "mean_wbits", "mean_abits", *RESOURCES
)  # fmt: skip
_SCORES: dict[tuple[str, str, tuple], pd.DataFrame] = {}


def design_key(point: Any) -> tuple:
    """Everything that fixes a point's problem table: the point without its budgets."""
    return (
        point.model, point.target, point.rows, point.cols, point.dataflow, point.clock_mhz, point.bandwidth_gbps,
        point.ifmap_bytes, point.filter_bytes, point.ofmap_bytes, point.sensitivity, point.choices,
    )  # fmt: skip


def _scores(workload: Workload, sensitivity: str, pairs: Sequence[tuple[int, int]]) -> pd.DataFrame:
    from allocator.sweep.run import _sensitivity_table, proxy_sensitivity

    if sensitivity != "proxy":
        return _sensitivity_table(sensitivity)
    key = (workload.name, sensitivity, tuple(pairs))
    if key not in _SCORES:
        if len(_SCORES) > 64:
            _SCORES.clear()
        _SCORES[key] = proxy_sensitivity(workload, pairs)
    return _SCORES[key]


def solve_point(problem: Any, limits: Any, fronts: dict[Any, Any], prefer: str = "cycles") -> tuple[Any, str]:
    """(allocation, solver): the exact DP front for one budget (built once per design and quantity), else the ILP."""
    from allocator.ilp.mckp import frontier, single_budget, solve_single_budget
    from allocator.ilp.model import allocate

    quantity = single_budget(problem, limits)
    if quantity is None:
        return allocate(problem, limits), "ilp"
    if (quantity, prefer) not in fronts:
        fronts[quantity, prefer] = frontier(problem, quantity)
    return solve_single_budget(problem, limits, fronts[quantity, prefer]), "dp"


def allocate_points(
    workloads: Mapping[str, Workload], targets: Mapping[str, Target], points: Iterable[Any]
) -> list[dict[str, Any]]:
    """Result columns of each allocation point (the columns of ``run.allocate_point`` plus ``solver`` and
    ``solve_s``), points of one design sharing its problem and fronts."""
    from allocator.ilp.problem import build_problem
    from allocator.sweep.batch import _estimate
    from allocator.sweep.run import configure_target, point_limits
    from sim.errors import InputError
    from sim.target import PER_LAYER

    rows: list[dict[str, Any]] = []
    current: tuple | None = None
    problems: dict[str, Any] = {}  # per what a per-layer-dataflow array minimises (Limits.dataflow_preference)
    target: Target | None = None
    fronts: dict[tuple[str, str], Any] = {}
    failure = ""
    for point in points:
        key = design_key(point)
        limits = point_limits(point)
        prefer = limits.dataflow_preference() if point.dataflow == PER_LAYER else "cycles"
        if key != current:
            current, fronts, problems, failure = key, {}, {}, ""
        if not failure and prefer not in problems:
            try:
                target = configure_target(targets[point.target], point)
                acc = target.accelerator
                pairs = list(point.choices) or [(w, a) for w in acc.weight_bits for a in acc.act_bits]
                workload = workloads[point.model]
                scores = _scores(workload, point.sensitivity, pairs)
                problems[prefer] = build_problem(workload, target, scores, pairs, prefer=prefer)
            except InputError as exc:
                failure = str(exc).splitlines()[0]
        if failure:
            rows.append({"error": failure})
            continue
        began = time.perf_counter()
        allocation, solver = solve_point(problems[prefer], limits, fronts, prefer)
        objective = math.nan if allocation.objective is None else float(allocation.objective)
        row: dict[str, Any] = {
            "status": allocation.status,
            "objective": objective,
            "omega": objective,
            "message": allocation.message,
            "solver": solver,
        }
        if not allocation.ok or allocation.predicted is None:
            row.update(dict.fromkeys(_COSTS, math.nan), fits=False, plan="")
        else:
            bits = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
            predicted = allocation.predicted
            wbits_used = max(w for w, _ in bits.values())
            abits_used = max(a for _, a in bits.values())
            acc = target.accelerator  # type: ignore[union-attr]
            buffers = (acc.buffers.ifmap_bytes, acc.buffers.filter_bytes, acc.buffers.ofmap_bytes)
            resources = _estimate(target, acc.rows, acc.cols, acc.dataflow, buffers, (wbits_used, abits_used))  # type: ignore[arg-type]
            # a plan's simulated cycles are the problem's: fixed vector cycles plus each chosen option's cycles
            cycles = int(predicted.latency_cycles)
            row.update(
                cycles=float(cycles),
                latency_ms=float(cycles / (target.clock_mhz * 1e3)),  # type: ignore[union-attr]
                ilp_latency_ms=float(predicted.latency_ms),
                size_mb=float(predicted.size_mb),
                gbops=float(predicted.bops),
                energy_mj=float(predicted.energy_mj),
                mean_wbits=sum(w for w, _ in bits.values()) / len(bits),
                mean_abits=sum(a for _, a in bits.values()) / len(bits),
                fits=bool(resources[-1]),
                **dict(zip(RESOURCES, resources[:-1], strict=True)),
                plan=json.dumps(allocation.plan(), sort_keys=True),
            )
        row["solve_s"] = time.perf_counter() - began
        row["error"] = ""
        rows.append(row)
    return rows
