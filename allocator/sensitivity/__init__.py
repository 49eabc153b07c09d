"""How much each layer's quantization hurts: Hessian quadratic form and trace, Fisher, quantization errors."""

from allocator.sensitivity.scores import (
    Traces,
    component_type,
    fisher_scores,
    hessian_scores,
    hessian_traces,
    quantizable_layers,
    quantization_errors,
    scores_from_traces,
    sensitivity_table,
)

__all__ = [
    "Traces",
    "component_type",
    "fisher_scores",
    "hessian_scores",
    "hessian_traces",
    "quantizable_layers",
    "quantization_errors",
    "scores_from_traces",
    "sensitivity_table",
]
