"""PMQ's lightweight global sensitivity metric, in the closest published form by the same authors.

PMQ (Xiao, Li, Yang, Gu, "Patch-wise Mixed-Precision Quantization of Vision Transformer", arXiv 2305.06559)
names "a lightweight global metric" for layer sensitivity, but its formula was not found in any stored copy and
no code was released. This module implements the form of the same group's later mixed-precision code, HTQ
(github zkkli/HTQ, ``sensitivity.py`` and ``utils/pareto_utils.py``, read at commit 963fddce):

    s_i = mean |∂L/∂m_i|  over the elements of a multiplicative mask m_i = 1 on layer i's weight, on one batch
        = mean |W_i ⊙ ∂L/∂W_i|   (SNIP's connection sensitivity; the mask enters as W_i ⊙ m_i)
    Ω_i(b) = s_i · ‖W_i − Q_b(W_i)‖_F            (the Frobenius norm, not its square)

What we do differently from HTQ, and why:
- HTQ takes the gradient on a copy whose weights are re-initialised (Xavier normal); ``reinit=True`` does that,
  the default (False) keeps the model's own weights, whose loss the plan will change.
- HTQ prices activation bits with the *weight's* error at the activation width (its ``sen_a_result``); here the
  activation operand gets its own mask score s_a,i = mean |A_i ⊙ ∂ℓ/∂A_i| (ℓ: one sample's loss; mean over
  samples and elements) times the per-sample ‖A_i − Q_a(A_i)‖_F from ``quant``'s activation quantizers.
- Attention matmuls (no weights) score both operands as activations; the second (kᵀ, v) is the "weight"
  operand whose bits are the plan's ``wbits``, as everywhere in mixbit.

One forward and one backward per batch, no second-order terms: the cheapest scorer in mixbit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from allocator.sensitivity.configs import ScorerConfig, register_scorer
from allocator.sensitivity.scores import (
    LossFn,
    _ActivationTaps,
    _check_bit_pairs,
    _checked_loss,
    _prepared,
    _score_frame,
    _setup,
    _tap_key,
    quantization_errors,
)
from sim.errors import InputError

__all__ = ["MaskScores", "PMQConfig", "mask_scores", "pmq_scores"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True, kw_only=True)
class PMQConfig(ScorerConfig):
    """PMQ/HTQ's metric s_i·‖Δ_i‖_F (``pmq_scores``). ``reinit``: take the mask gradients on a copy with
    Xavier-normal re-initialised weights, as HTQ's code does (default: the model's own weights)."""

    reinit: bool = False


@dataclass(frozen=True)
class MaskScores:
    """Mean |mask gradient| of every GEMM's two quantized operands: ``weight`` (the wbits operand: the weight,
    or a matmul's second input) and ``act`` (the input; NaN when activations were not scored). ``samples``: data
    samples used; ``seconds``: wall time."""

    layers: tuple[str, ...]
    weight: tuple[float, ...]
    act: tuple[float, ...]
    samples: int
    seconds: float

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, weight_mask_score, act_mask_score."""
        return pd.DataFrame(
            {"layer": list(self.layers), "weight_mask_score": list(self.weight), "act_mask_score": list(self.act)}
        )


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy whose Linear/Conv2d weights are drawn again (Xavier normal, as HTQ's ``snip``), seeded."""
    import copy

    fresh = copy.deepcopy(model)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for module in fresh.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
                std = math.sqrt(2.0 / (fan_in + fan_out))
                draw = torch.randn(module.weight.shape, generator=generator) * std
                module.weight.copy_(draw.to(module.weight.device, module.weight.dtype))
    return fresh


def mask_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    *,
    layers: Sequence[str] | None = None,
    activations: bool = True,
    reinit: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int | str | None = None,
) -> MaskScores:
    """s = mean |∂L/∂m| of a multiplicative all-ones mask on each quantized operand (see the module docstring).

    Weights: the gradient of the mean loss over all of ``data`` (batches weighted by their size), times the
    weight. Activations: per sample, |A ⊙ ∂ℓ/∂A| with ℓ that sample's loss, averaged over samples and elements.
    """
    start = time.perf_counter()
    if reinit:
        model = _reinitialised(model, seed)
    model, dev, chosen, _keys, batches, samples = _setup(model, layers, activations, data, device, batch_size)
    weights = {layer.name: layer.module.weight for layer in chosen if not layer.is_matmul}
    weight_grad = {name: torch.zeros_like(w, dtype=torch.float64) for name, w in weights.items()}
    act_sum: dict[tuple[str, int], float] = {}
    act_numel: dict[tuple[str, int], int] = {}
    with _prepared(model, dev, list(weights.values())):
        for index, (x, y) in enumerate(batches):
            with _ActivationTaps(chosen if activations else []) as taps:
                loss = _checked_loss(loss_fn(model(x), y), f"data batch {index}")
                eps_keys = list(taps.eps)
                inputs = [*weights.values(), *(taps.eps[key] for key in eps_keys)]
                grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            share = x.shape[0] / samples
            for name, g in zip(weights, grads[: len(weights)], strict=True):
                if g is not None:
                    weight_grad[name] += share * g.double()
            for key, g in zip(eps_keys, grads[len(weights) :], strict=True):
                if g is None:
                    continue
                # the mean loss's gradient is 1/B of each sample's: times B gives per-sample mask gradients
                per_sample = (taps.inputs[key].double() * g.double() * x.shape[0]).abs()
                act_sum[key] = act_sum.get(key, 0.0) + float(per_sample.sum())
                act_numel[key] = act_numel.get(key, 0) + per_sample.numel()
    weight_score, act_score = [], []
    for layer in chosen:
        if layer.is_matmul:
            key = _tap_key(layer, "weight")
            weight_score.append(act_sum.get(key, 0.0) / max(act_numel.get(key, 0), 1))
        else:
            w = layer.module.weight.detach().double()
            weight_score.append(float((w * weight_grad[layer.name]).abs().mean()))
        if activations:
            key = _tap_key(layer, "act")
            act_score.append(act_sum.get(key, 0.0) / max(act_numel.get(key, 0), 1))
        else:
            act_score.append(math.nan)
    if not any(s > 0 for s in weight_score):
        raise InputError("loss does not depend on the model's quantizable operands (every mask gradient is 0)")
    names = tuple(layer.name for layer in chosen)
    return MaskScores(names, tuple(weight_score), tuple(act_score), samples, time.perf_counter() - start)


def pmq_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    bit_pairs: Iterable[tuple[int, int]],
    config: PMQConfig | None = None,
    *,
    calibration: Batch | Iterable[Batch] | None = None,
) -> pd.DataFrame:
    """Ω_i(w, a) = s_w,i·‖ΔW_i(w)‖_F + s_a,i·‖ΔA_i(a)‖_F for every layer and pair (``mask_scores`` times the
    Frobenius norms of ``quantization_errors``, activations per sample). Same columns as the other scorers
    (layer, wbits, abits, sensitivity, sensitivity_se = 0, weight_sensitivity, act_sensitivity)."""
    config = config or PMQConfig()
    pairs = _check_bit_pairs(bit_pairs)
    masks = mask_scores(
        model,
        loss_fn,
        data,
        layers=config.layers,
        activations=config.activations,
        reinit=config.reinit,
        seed=config.seed,
        device=config.device,
        batch_size=config.batch_size,
    )
    errors = quantization_errors(
        model,
        data if calibration is None else calibration,
        {w for w, _ in pairs},
        {a for _, a in pairs},
        layers=masks.layers,
        act_kinds=config.act_kinds,
        act_method=config.act_method,
        device=config.device,
        batch_size=config.batch_size,
    )
    norm = {(r.layer, r.operand, int(r.bits)): math.sqrt(max(float(r.error), 0.0)) for r in errors.itertuples()}
    weight_mask = dict(zip(masks.layers, masks.weight, strict=True))
    act_mask = dict(zip(masks.layers, masks.act, strict=True))

    def act_term(name: str, a: int) -> float:
        s = act_mask[name]
        return 0.0 if math.isnan(s) else s * norm[(name, "act", a)]

    frame = _score_frame(masks.layers, pairs, lambda name, w: weight_mask[name] * norm[(name, "weight", w)], act_term)
    frame["sensitivity_se"] = 0.0
    frame.attrs["estimator"] = {
        "form": "pmq",
        "estimator": "mask gradient x Frobenius error (HTQ's form of PMQ's metric"
        + (", re-initialised weights)" if config.reinit else ", model weights)"),
        "seconds_mask": masks.seconds,
    }
    return frame


@register_scorer(PMQConfig)
def _pmq_registered(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    config: PMQConfig,
    calibration: Any,
) -> pd.DataFrame:
    return pmq_scores(model, loss_fn, data, pairs, config, calibration=calibration)
