"""The bridge from torch models to workloads, sensitivity, the bit-allocation ILP, the pipeline and the CLI.

The only package that imports both ``sim`` and ``quant``. Names load lazily so ``mixbit targets`` does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Limits",
    "allocate",
    "build_problem",
    "fisher_scores",
    "hessian_scores",
    "hessian_traces",
    "pareto_front",
    "run_pipeline",
    "workload_from_model",
]

_HOME = {
    "workload_from_model": "allocator.workload",
    "hessian_traces": "allocator.sensitivity",
    "hessian_scores": "allocator.sensitivity",
    "fisher_scores": "allocator.sensitivity",
    "allocate": "allocator.ilp",
    "pareto_front": "allocator.ilp",
    "run_pipeline": "allocator.pipeline",
    "sensitivity_table": "allocator.sensitivity",
    "Limits": "allocator.ilp",
    "build_problem": "allocator.problem",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'allocator' has no attribute {name!r}")
