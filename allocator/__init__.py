"""The bridge from torch models to workloads, sensitivity, the bit-allocation ILP, the pipeline and the CLI.

The only package that imports both ``sim`` and ``quant``. Names load lazily so ``mixbit targets`` does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Limits",
    "PipelineConfig",
    "allocate",
    "build_problem",
    "fisher_scores",
    "fisher_traces",
    "hessian_scores",
    "hessian_traces",
    "pareto_front",
    "problem_from_json",
    "run_pipeline",
    "workload_from_model",
]

_HOME = {
    "workload_from_model": "allocator.bridge.workload",
    "hessian_traces": "allocator.sensitivity.scores",
    "hessian_scores": "allocator.sensitivity.scores",
    "fisher_scores": "allocator.sensitivity.scores",
    "fisher_traces": "allocator.sensitivity.scores",
    "allocate": "allocator.ilp.model",
    "pareto_front": "allocator.ilp.model",
    "problem_from_json": "allocator.ilp.model",
    "run_pipeline": "allocator.pipeline.run",
    "PipelineConfig": "allocator.pipeline.run",
    "sensitivity_table": "allocator.sensitivity.scores",
    "Limits": "allocator.ilp.model",
    "build_problem": "allocator.ilp.problem",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'allocator' has no attribute {name!r}")
