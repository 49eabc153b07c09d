"""How much each layer's quantization hurts: Hessian quadratic form and trace, Fisher, quantization errors.

Scorers are described by typed, frozen configs (``HessianQuadraticConfig``, ``HessianTraceConfig``,
``FisherConfig``, ``TypeAwareFisherConfig`` (LampQ), ``PMQConfig``) and run through one registry:
``score(model, loss_fn, data, bit_pairs, config)``.
"""

from allocator.sensitivity.configs import (
    FisherConfig,
    HessianQuadraticConfig,
    HessianTraceConfig,
    ScorerConfig,
    register_scorer,
    registered_scorers,
    score,
)
from allocator.sensitivity.lampq import TypeAwareFisherConfig, type_aware_fisher_scores, type_aware_traces, type_scales
from allocator.sensitivity.pmq import MaskScores, PMQConfig, mask_scores, pmq_scores
from allocator.sensitivity.scores import (
    Traces,
    component_type,
    fisher_scores,
    fisher_traces,
    hessian_scores,
    hessian_traces,
    make_config,
    quantizable_layers,
    quantization_errors,
    scores_from_traces,
    sensitivity_table,
)

__all__ = [
    "FisherConfig",
    "HessianQuadraticConfig",
    "HessianTraceConfig",
    "MaskScores",
    "PMQConfig",
    "ScorerConfig",
    "Traces",
    "TypeAwareFisherConfig",
    "component_type",
    "fisher_scores",
    "fisher_traces",
    "hessian_scores",
    "hessian_traces",
    "make_config",
    "mask_scores",
    "pmq_scores",
    "quantizable_layers",
    "quantization_errors",
    "register_scorer",
    "registered_scorers",
    "score",
    "scores_from_traces",
    "sensitivity_table",
    "type_aware_fisher_scores",
    "type_aware_traces",
    "type_scales",
]
