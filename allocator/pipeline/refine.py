"""LampQ's iterative update: re-score the options on the model quantized with the current plan, re-solve.

LampQ (arXiv 2511.10004) notes that scores taken once on the full-precision model ignore how quantizing earlier
layers changes the sensitivity of later ones ("quantization-unaware bit allocation"); it initialises the bits by
the ILP and then updates them iteratively, recomputing the metric on the quantized model (3 rounds in its released
configuration). Each round here: quantize and calibrate a copy with the current plan, take the same scorer's Ω
for every option on it (``score_options(plan=...)``), solve again under the same limits with the same solver, and
quantize, calibrate and evaluate the new plan. A round whose plan equals the previous one ends the loop: the
next round would score the same model and choose the same plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from torch import nn

from allocator.ilp.model import Allocation, Limits, allocate
from allocator.ilp.problem import Problem
from quant.data import ModelData

__all__ = ["RefineRound", "refine_rounds"]


@dataclass(frozen=True)
class RefineRound:
    """One round of the iterative update (round 0: the first solve). ``objective``: Σ Ω of the plan under that
    round's scores (rounds are scored on different models, so Ω moves with the scores as well as the plan);
    ``latency_ms``/``size_mb``: predicted; ``accuracy``/``test_loss``: the plan quantized, calibrated and evaluated
    on the held-out data (None without labels); ``changed_layers``: layers whose bits differ from the previous
    round's plan; ``seconds``: wall time of the round (scores, solve and evaluation)."""

    round: int
    objective: float
    latency_ms: float
    size_mb: float
    accuracy: float | None
    test_loss: float | None
    changed_layers: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _changed(a: Allocation, b: Allocation) -> int:
    bits = {c.layer: (c.wbits, c.abits) for c in a.chosen}
    return sum(bits.get(c.layer) != (c.wbits, c.abits) for c in b.chosen)


def refine_rounds(
    net: nn.Module,
    model_data: ModelData,
    problem: Problem,
    limits: Limits,
    first: Allocation,
    config: Any,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[Allocation, pd.DataFrame | None, tuple[RefineRound, ...]]:
    """Up to ``config.refine`` rounds after ``first`` (``config``: a ``PipelineConfig``). Returns the last
    allocation (its ``refinements`` = rounds run), that round's score table (None when no round ran) and a
    ``RefineRound`` per plan, round 0 included."""
    from allocator.pipeline.run import SOLVERS, _plan_with_kind, _quantized_evaluation, config_scores

    say = log or (lambda _message: None)
    method = SOLVERS[config.solver]

    def evaluated(allocation: Allocation, round_: int, changed: int, began: float) -> RefineRound:
        plan = _plan_with_kind({**allocation.plan(), "model": config.model_name}, config.act_kind)
        _, _, accuracy, test_loss = _quantized_evaluation(net, plan, model_data, config)
        assert allocation.predicted is not None and allocation.objective is not None
        return RefineRound(
            round_,
            allocation.objective,
            allocation.predicted.latency_ms,
            allocation.predicted.size_mb,
            accuracy,
            test_loss,
            changed,
            time.perf_counter() - began,
        )

    began = time.perf_counter()
    rounds = [evaluated(first, 0, 0, began)]
    allocation, scores = first, None
    batch = model_data.calib_batch(config.sensitivity_images, config.seed)
    for round_ in range(1, config.refine + 1):
        began = time.perf_counter()
        plan = _plan_with_kind({**allocation.plan(), "model": config.model_name}, config.act_kind)
        scores = config_scores(net, batch, config, plan)
        problem = problem.with_sensitivity(scores)
        previous, allocation = allocation, allocate(problem, limits, method=method).check()  # type: ignore[arg-type]
        allocation = replace(allocation, refinements=round_)
        changed = _changed(previous, allocation)
        rounds.append(evaluated(allocation, round_, changed, began))
        last = rounds[-1]
        say(
            f"refine round {round_}: Ω {last.objective:.4g}, {last.latency_ms:.4f} ms, {changed} layers changed"
            + ("" if last.accuracy is None else f", accuracy {100 * last.accuracy:.2f} %")
        )
        if changed == 0:
            say(f"refine: the plan did not change in round {round_}; stopping")
            break
    return allocation, scores, tuple(rounds)
