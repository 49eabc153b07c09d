"""LampQ's type-aware Fisher metric: one scale per ViT component type, shared by a layer's two operands.

LampQ (Kim, Lee, Kim, Yun, Kwon, Kang, "LampQ: Towards Accurate Layer-wise Mixed Precision Quantization for
Vision Transformers", AAAI 2026, arXiv 2511.10004) scores layer i of component type t (qkv, proj, fc1, fc2; here
also the attention matmuls matmul_qk and matmul_av, patch_embed and head) as

    Ω_i = α_t · tr(F_i)

with F_i the empirical Fisher of the layer, because raw Fisher magnitudes differ by orders between attention and
MLP layers (its "mismatch in metric scale across component types"). The definition of α_t was not in any copy
we could read (abstract and third-party summaries only; no code released). Our reading, stated so it can be
checked against the paper: α_t makes the mean per-element Fisher trace of the layer's weight over the layers of
type t equal to 1,

    α_t = 1 / mean_{j ∈ t} (tr(F_w,j) / n_w,j),

and, since LampQ gives a layer one metric, the same α_t scales the layer's activation term too, so a layer's
weight/activation balance is the raw Fisher's. The ILP's option score is then

    Ω_i(w, a) = α_t · (tr(F_w,i)/n_w,i · ‖ΔW_i(w)‖² + tr(F_a,i)/n_a,i · ‖ΔA_i(a)‖²).

The earlier ``FisherConfig(normalize=True)`` divided each *operand* by its own type mean instead (weights and
activations put on one scale separately); ``bench/methods.py`` measures both against the raw Fisher.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from allocator.sensitivity.configs import ScorerConfig, register_scorer
from allocator.sensitivity.scores import (
    LossFn,
    Traces,
    _check_bit_pairs,
    _scores_for,
    component_type,
    fisher_traces,
)

__all__ = ["TypeAwareFisherConfig", "type_aware_fisher_scores", "type_aware_traces", "type_scales"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True, kw_only=True)
class TypeAwareFisherConfig(ScorerConfig):
    """LampQ's type-aware Fisher metric (``type_aware_fisher_scores``): raw empirical-Fisher traces, one scale
    α_t per component type (``type_scales``), times the quantization errors."""


def type_scales(traces: Traces) -> dict[str, float]:
    """α_t for every component type in ``traces``: 1 / (mean per-element trace of the layers' wbits operand).

    A type whose traces are all 0 (or not finite) keeps α_t = 1: nothing to put on a scale."""
    per_element: dict[str, list[float]] = {}
    for name, trace, numel in zip(traces.layers, traces.weight_trace, traces.weight_numel, strict=True):
        per_element.setdefault(component_type(name), []).append(abs(trace) / max(numel, 1))
    scales = {}
    for kind, values in per_element.items():
        mean = float(np.mean(values))
        scales[kind] = 1.0 / mean if mean > 0 and math.isfinite(mean) else 1.0
    return scales


def type_aware_traces(traces: Traces) -> Traces:
    """``traces`` with both operands of every layer multiplied by its type's α_t (``type_scales``); standard
    errors scale with them."""
    scales = type_scales(traces)
    alpha = [scales[component_type(name)] for name in traces.layers]

    def scaled(values: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(v * a for v, a in zip(values, alpha, strict=True)) if values else values

    return replace(
        traces,
        weight_trace=scaled(traces.weight_trace),
        act_trace=scaled(traces.act_trace),
        weight_se=scaled(traces.weight_se),
        act_se=scaled(traces.act_se),
    )


def type_aware_fisher_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    bit_pairs: Iterable[tuple[int, int]],
    config: TypeAwareFisherConfig | None = None,
    *,
    calibration: Batch | Iterable[Batch] | None = None,
) -> pd.DataFrame:
    """The ILP's sensitivity table from LampQ's metric (module docstring): columns layer, wbits, abits,
    sensitivity, sensitivity_se (0: the Fisher is exact on its data), weight_sensitivity, act_sensitivity;
    ``frame.attrs["type_scales"]`` holds α_t per component type."""
    config = config or TypeAwareFisherConfig()
    pairs = _check_bit_pairs(bit_pairs)
    raw = fisher_traces(model, loss_fn, data, normalize=False, **config.common())
    traces = type_aware_traces(raw)
    estimator = {"form": "trace", "estimator": "type-aware fisher traces (LampQ)", "draws": 0}
    frame = _scores_for(model, data, pairs, traces, config, calibration, estimator)
    frame.attrs["type_scales"] = type_scales(raw)
    return frame


@register_scorer(TypeAwareFisherConfig)
def _type_aware_registered(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    config: TypeAwareFisherConfig,
    calibration: Any,
) -> pd.DataFrame:
    return type_aware_fisher_scores(model, loss_fn, data, pairs, config, calibration=calibration)
