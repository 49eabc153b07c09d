"""Predicted against published: how a published design's target (``targets/published/``) compares with its paper.

``compare_design`` takes a target with a ``[published]`` table and a function that predicts the latency (ms) of
one of its published results (``None`` when the model cannot be simulated, e.g. a model that is not a timm
model), and returns one ``Comparison`` per figure the paper gives: each latency, and DSP/LUT/FF/BRAM36 against
``sim.estimate_resources``. The goals are issue #16's: latency within ±25 %, DSP within ±10 %, LUT/FF/BRAM
within ±30 %. A figure the paper leaves out is not compared; a result that cannot be simulated is reported
with ``predicted = None`` and ``met = None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sim.errors import InputError
from sim.resources import estimate_resources
from sim.target import PublishedResult, Target

__all__ = ["GOALS", "Comparison", "compare_design", "relative_error"]

#: Largest relative error each figure may have (issue #16, "Published designs as targets").
GOALS: dict[str, float] = {"latency_ms": 0.25, "dsp": 0.10, "lut": 0.30, "ff": 0.30, "bram36": 0.30}

LatencyFn = Callable[[Target, PublishedResult], float | None]


@dataclass(frozen=True)
class Comparison:
    """One figure of one design: predicted against published; ``error`` = predicted / published − 1."""

    design: str
    quantity: str  # "latency_ms", "dsp", "lut", "ff" or "bram36"
    model: str  # the result's model for latencies, "" for resources
    predicted: float | None
    published: float
    error: float | None
    goal: float
    met: bool | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def relative_error(predicted: float, published: float) -> float:
    """predicted / published − 1 (positive: the model predicts more than the paper reports)."""
    if published <= 0:
        raise InputError(f"published value must be positive to compare, got {published}")
    return predicted / published - 1.0


def _comparison(
    design: str, quantity: str, model: str, predicted: float | None, published: float, note: str = ""
) -> Comparison:
    goal = GOALS[quantity]
    if predicted is None:
        return Comparison(design, quantity, model, None, published, None, goal, None, note)
    error = relative_error(predicted, published)
    return Comparison(design, quantity, model, predicted, published, error, goal, abs(error) <= goal, note)


def compare_design(target: Target, latency_ms: LatencyFn) -> list[Comparison]:
    """Every figure of ``target.published`` against the simulator's prediction (latencies first, then resources)."""
    published = target.published
    if published is None:
        raise InputError(f"{target.path}: no [published] table; only targets/published/ designs carry one")
    rows = []
    for result in published.results:
        paper_ms = result.latency_ms if result.latency_ms is not None else 1e3 / float(result.fps or 0)
        rows.append(
            _comparison(target.name, "latency_ms", result.model, latency_ms(target, result), paper_ms, result.note)
        )
    resources = estimate_resources(target)
    for name in ("dsp", "lut", "ff", "bram36"):
        value = getattr(published, name)
        if value is not None:
            rows.append(_comparison(target.name, name, "", float(getattr(resources, name)), float(value)))
    return rows
