"""Per-layer quantization sensitivity: Hutchinson Hessian traces, empirical Fisher, and HAWQ-style scores.

Every quantizable GEMM of a model is scored for each (wbits, abits) pair with

    Ω_i(w, a) = Tr(H_w,i)/n_w,i · ‖Q_w(W_i) − W_i‖² + Tr(H_a,i)/n_a,i · ‖Q_a(A_i) − A_i‖²

(HAWQ-V2, arXiv 1911.03852, eq. 7; HAWQ-V3, arXiv 2011.10680, §3.3), where the traces come from the loss
Hessian (``hessian_traces``) or the empirical Fisher (``fisher_traces``) and the errors from ``quant``'s own
quantizers at each bit width.

Hessian traces (Hutchinson, Tr(H) = E[vᵀHv] over Rademacher v): one Hessian-vector product over all quantized
tensors at once per draw, split per tensor as vᵢᵀ(Hv)ᵢ. The cross terms vᵢᵀHᵢⱼvⱼ have zero mean, so every block
trace comes out of the same product; PyHessian (arXiv 1912.07145) has no per-layer API and users loop over
layers, one product per layer per draw. Several draws share one forward/backward graph and go through the
second backward together (``torch.autograd.grad(..., is_grads_batched=True)``, which vmaps it).

Activations are scored through zero perturbation tensors added by forward pre-hooks at every GEMM input (and
both operands of the attention matmul modules ``*.matmul_qk`` / ``*.matmul_av`` when the model has them): the
Hessian of the loss with respect to such a tensor is the Hessian with respect to that activation.

Scale conventions (so that the score approximates the loss increase up to the factor ½):
- the loss is the mean over samples; a data set split in batches is weighted by batch size;
- weight traces are of the Hessian of that mean loss with respect to the weight tensor; n_w = its elements;
- activation traces are of the Hessian of the mean loss with respect to all samples' activations, which equals
  the mean over samples of each sample's own Hessian trace; n_a = elements of ONE sample's activation, and the
  activation error is the per-sample mean ‖Q(A) − A‖² over the calibration samples.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from allocator.sensitivity.configs import (
    FisherConfig,
    HessianQuadraticConfig,
    HessianTraceConfig,
    ScorerConfig,
    config_fields,
    register_scorer,
    score,
)
from sim.errors import InputError

__all__ = [
    "Traces",
    "component_type",
    "fisher_scores",
    "fisher_traces",
    "hessian_scores",
    "hessian_traces",
    "quantizable_layers",
    "quantization_errors",
    "scores_from_traces",
    "sensitivity_table",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]
MATMUL_SUFFIXES = ("matmul_qk", "matmul_av")

# Draws per batched second backward. Measured on CPU (bench/sensitivity.py, depth-12 test ViT, batch 32,
# weights only, 8 draws, 1 thread, shared machine at load ~7): 0.173 s/draw batched with is_grads_batched,
# 0.187 s/draw one by one on the same graph, 0.319 s/draw with torch.func vmap(jvp(grad)) — so the autograd
# double backward is the engine and batching pays a little here; on a GPU it should fill the device (not
# measured: no GPU was lent).
DEFAULT_BATCH_DRAWS = 8

# Sketch size of the deflated (Hutch++) trace estimator: products per weight spent on its dominant range (twice
# this: the sketch, then the exact part). Measured once with a scratch script on the depth-12 testbed trained on
# digits (bench/sensitivity.py's _deep_testbed, 32 images, 100 draws; shared machine at load ~8): a draw's spread
# relative to the trace, plain / rank 8 / 16 / 32, was 0.74 / 0.094 / 0.046 / 0.028 for patch_embed.proj,
# 0.56 / 0.11 / 0.077 / 0.053 for blocks.1.attn.proj, 0.91 / 0.45 / 0.39 / 0.33 for blocks.0.mlp.fc1 and
# 1.80 / 1.65 / 1.27 / 1.03 for blocks.2.attn.qkv. Draws needed go with the square, so 16 pays for its 32 products on
# the hard layers (qkv, fc1) that set the run's length; 32 would pay on some of them too.
DEFAULT_DEFLATION_RANK = 16

# Krylov deflation (probe="krylov"): products per block, the largest basis per weight, pilot draws per growth
# stage, and the growth rule. A weight's basis doubles (16, 32, 64, ...) while the draws its pilot spread still
# needs exceed GROWTH_RATIO x the products the doubling costs. Measured with a scratch script on the depth-12
# testbed trained on digits (32 images, 40 draws per point, 1 thread, idle 2-core machine): a draw's standard
# deviation without deflation / at rank 64 / 128 / 256 / 512 was 3.85 / 2.36 / 1.66 / 0.60 / 0.16 for
# blocks.3.mlp.fc1 (trace -1.79), 10.8 / 3.39 / 2.22 / 0.97 / 0.29 for blocks.6.attn.qkv (8.37) and
# 7.77 / 2.93 / 1.68 / 0.46 / 0.17 for blocks.2.attn.qkv (4.85): the Krylov basis keeps cutting the spread
# where Hutch++'s random sketch (rank 16 above) had flattened out.
KRYLOV_BLOCK = 16
DEFAULT_MAX_RANK = 512
KRYLOV_PILOT_DRAWS = 8
GROWTH_RATIO = 2.0
# Most bytes that all weights' Krylov bases may hold together (float32): each weight's rank is capped at
# BASIS_BUDGET_BYTES / (4 x all traced weights' elements), e.g. 512 on the depth-12 testbed, 12 on DeiT-S.
BASIS_BUDGET_BYTES = 1 << 30
# The relative standard error a Krylov basis is sized for when the run has no rel_se target (fixed draws).
KRYLOV_DEFAULT_TARGET = 0.05
# In a run at a fixed cost (max_seconds), the share of it after which Krylov bases stop growing.
KRYLOV_TIME_SHARE = 0.5

# Elements of each GEMM input kept to fit its activation quantizers: the same cap as quant's calibration
# observers (quant.modules._MAX_OBSERVED), so the scores price the quantizers the plan will be calibrated with.
# Holding every input instead cost 50 MB per DeiT-S image (12 blocks x ~1M floats).
MAX_FIT_ELEMENTS = 1 << 18

# batch_size="auto": samples per autograd graph chosen so that GRAPH_BYTES_PER_INPUT_BYTE x (one sample's GEMM
# input bytes) x samples stays within GRAPH_BUDGET_BYTES. The factor was measured on DeiT-T/S at 224 (peak RSS
# over the model and data): DeiT-T, 4 images, peak RSS 1,031 MB at 1 image per graph and 1,806 MB at 4, so
# ≈ 258 MB per image against 24 MB of GEMM inputs per image — a factor of 10.7 (the 8-bit fake-quant copy the
# pipeline scores keeps its quantizers' intermediates in the graph too).
GRAPH_BUDGET_BYTES = 1 << 30
GRAPH_BYTES_PER_INPUT_BYTE = 11
MAX_AUTO_BATCH = 32

# Most bytes of probe vectors stacked for one batched second backward of the random-sign quadratic form (every
# operand's error, once per product): fewer products share a pass when a micro-batch's operands are large.
VECTOR_BUDGET_BYTES = 256 << 20


@dataclass(frozen=True)
class _Layer:
    """A quantizable GEMM: a module with a weight, or an attention matmul module (two activation operands)."""

    name: str
    module: nn.Module
    is_matmul: bool


@dataclass(frozen=True)
class Traces:
    """Per-layer traces (Hessian or Fisher) of the two quantized operands of every GEMM.

    ``weight_*`` is the operand whose bits are the plan's ``wbits``: the weight, or for attention matmuls the
    second operand (kᵀ or v, an activation). ``act_*`` is the GEMM's input activation (``abits``); NaN when
    activations were not traced. ``*_numel``: elements (per sample for activations). ``*_draws``: Rademacher
    draws averaged for that estimate (the stopping rule freezes each estimate separately; 0 for Fisher).
    ``draws``: draws run in all; ``samples``: data samples used; ``seconds``: wall time.
    """

    method: Literal["hessian", "fisher"]
    layers: tuple[str, ...]
    weight_trace: tuple[float, ...]
    weight_numel: tuple[int, ...]
    act_trace: tuple[float, ...]
    act_numel: tuple[int, ...]
    weight_draws: tuple[int, ...]
    act_draws: tuple[int, ...]
    draws: int
    samples: int
    seconds: float
    weight_se: tuple[float, ...] = ()
    act_se: tuple[float, ...] = ()
    weight_rank: tuple[int, ...] = ()  # deflation basis size per weight (probe deflated/krylov), else empty

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, component, weight_trace, weight_se, weight_numel, act_trace, act_se,
        act_numel, weight_draws, act_draws (standard errors NaN where not estimated, 0 for Fisher)."""
        return pd.DataFrame(
            {
                "layer": list(self.layers),
                "component": [component_type(name) for name in self.layers],
                "weight_trace": list(self.weight_trace),
                "weight_se": list(self.weight_se or [math.nan] * len(self.layers)),
                "weight_numel": list(self.weight_numel),
                "act_trace": list(self.act_trace),
                "act_se": list(self.act_se or [math.nan] * len(self.layers)),
                "act_numel": list(self.act_numel),
                "weight_draws": list(self.weight_draws),
                "act_draws": list(self.act_draws),
            }
        )

    def per_element_se(self) -> dict[str, tuple[float, float]]:
        """``{layer: (SE(Tr(H_w))/n_w, SE(Tr(H_a))/n_a)}``: standard errors of ``per_element``'s factors (0 when
        not estimated)."""
        weight_se = self.weight_se or (0.0,) * len(self.layers)
        act_se = self.act_se or (0.0,) * len(self.layers)
        return {
            name: (w / max(nw, 1), 0.0 if math.isnan(a) else a / max(na, 1))
            for name, w, nw, a, na in zip(
                self.layers, weight_se, self.weight_numel, act_se, self.act_numel, strict=True
            )
        }

    def per_element(self) -> dict[str, tuple[float, float]]:
        """``{layer: (Tr(H_w)/n_w, Tr(H_a)/n_a)}``, the factors the quantization errors are weighted by."""
        return {
            name: (w / max(nw, 1), a / max(na, 1))
            for name, w, nw, a, na in zip(
                self.layers, self.weight_trace, self.weight_numel, self.act_trace, self.act_numel, strict=True
            )
        }


# ---------------------------------------------------------------------------------------------- layers


def component_type(name: str) -> str:
    """The ViT component a layer name belongs to: patch_embed, qkv, proj, fc1, fc2, matmul_qk, matmul_av,
    head, patch_merge (Swin downsample) or gemm (anything else)."""
    parts = name.split(".")
    last = parts[-1]
    if parts[0].startswith("head") or last.startswith("head"):  # head, head_dist (DeiT), head.fc (Swin)
        return "head"
    if "patch_embed" in parts:
        return "patch_embed"
    if last in ("qkv", "fc1", "fc2", *MATMUL_SUFFIXES):
        return last
    if last == "proj":
        return "proj"
    if last == "reduction" or "downsample" in parts:
        return "patch_merge"
    return "gemm"


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the model's quantizable GEMMs in module order (the contract's layer names)."""
    return [layer.name for layer in _find_layers(model, None)]


def _find_layers(model: nn.Module, names: Sequence[str] | None) -> list[_Layer]:
    found: list[_Layer] = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            found.append(_Layer(name, module, is_matmul=False))
        elif name.split(".")[-1] in MATMUL_SUFFIXES:
            found.append(_Layer(name, module, is_matmul=True))
    if not found:
        raise InputError(
            f"model {type(model).__name__} has no quantizable layers (nn.Linear, nn.Conv2d, *.matmul_qk, *.matmul_av)"
        )
    if names is None:
        return found
    by_name = {layer.name: layer for layer in found}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"layers {unknown} are not quantizable layers of the model (e.g. {found[0].name!r})")
    if not names:
        raise InputError("layers is empty; leave it None to score every quantizable layer")
    return [by_name[n] for n in names]


# ---------------------------------------------------------------------------------------------- data


def _batches(data: Batch | Iterable[Batch], device: torch.device, batch_size: int | None = None) -> list[Batch]:
    """``data`` as a list of (inputs, targets) batches on ``device``, each cut into pieces of at most
    ``batch_size`` samples (None: as given). The pieces are what one autograd graph holds, so they bound memory."""
    if batch_size == "auto":
        raise InputError("batch_size 'auto' must be resolved against the model first (_resolve_batch_size)")
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        items: list[Any] = [data]
    else:
        try:
            items = list(data)
        except TypeError:
            kind = type(data).__name__
            raise InputError(f"data must be an (inputs, targets) pair or an iterable of them, not {kind}") from None
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be at least 1 (or None for the batches as given), got {batch_size}")
    batches: list[Batch] = []
    for index, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Tensor)):
            raise InputError(f"data batch {index} is not an (inputs, targets) pair of tensors")
        x, y = item
        if x.shape[0] == 0:
            raise InputError(f"data batch {index} is empty")
        step = x.shape[0] if batch_size is None else batch_size
        for first in range(0, x.shape[0], step):
            xs = x[first : first + step]
            ys = y[first : first + step] if isinstance(y, Tensor) and y.dim() > 0 else y
            batches.append((xs.to(device), ys.to(device) if isinstance(ys, Tensor) else ys))
    if not batches:
        raise InputError("data holds no batches")
    return batches


def _resolve_batch_size(
    model: nn.Module,
    chosen: Sequence[_Layer],
    data: Batch | Iterable[Batch],
    batch_size: int | str | None,
    device: torch.device,
) -> int | None:
    """``batch_size``, with ``"auto"`` resolved to the samples whose autograd graph fits ``GRAPH_BUDGET_BYTES``:
    one sample's GEMM inputs (both matmul operands) are measured by a forward pass and taken
    ``GRAPH_BYTES_PER_INPUT_BYTE`` times (forward activations plus the double-backward graph)."""
    if batch_size != "auto":
        return batch_size  # type: ignore[return-value]
    first = _batches(data, device)[0][0][:1]
    total = 0

    def count(module: nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal total
        total += sum(a.numel() * a.element_size() for a in args[:2] if isinstance(a, Tensor))

    handles = [layer.module.register_forward_pre_hook(count) for layer in chosen]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(first)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return max(1, min(MAX_AUTO_BATCH, GRAPH_BUDGET_BYTES // max(GRAPH_BYTES_PER_INPUT_BYTE * total, 1)))


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _prepared(model: nn.Module, device: torch.device, weights: Sequence[Tensor]) -> Iterator[None]:
    """Eval mode, gradients only on the quantized weights; everything restored afterwards."""
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    wanted = {id(w) for w in weights}
    model.eval()
    for p, _ in flags:
        p.requires_grad_(id(p) in wanted)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model itself when it already lives on ``device``, else a copy moved there."""
    param = next(model.parameters(), None)
    if param is None or param.device == device:
        return model
    return copy.deepcopy(model).to(device)


# ---------------------------------------------------------------------------------------------- taps


class _ActivationTaps:
    """Forward pre-hooks that add a zero tensor to each GEMM input (both operands for attention matmuls).

    ``fixed`` maps a key to a ready tensor to add (used under torch.func); otherwise each forward creates
    fresh zeros that require grad. Keys are ``(layer, 0)`` for the first operand and ``(layer, 1)`` for the
    second operand of a matmul. ``record`` keeps the (unperturbed) inputs instead, for calibration.
    """

    def __init__(self, layers: Sequence[_Layer], *, fixed: Mapping[tuple[str, int], Tensor] | None = None):
        self.layers = layers
        self.fixed = fixed
        self.eps: dict[tuple[str, int], Tensor] = {}
        self.inputs: dict[tuple[str, int], Tensor] = {}  # the unperturbed inputs, detached
        self._handles: list[Any] = []

    def __enter__(self) -> _ActivationTaps:
        for layer in self.layers:
            self._handles.append(layer.module.register_forward_pre_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: _Layer) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
        operands = 2 if layer.is_matmul else 1

        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            args = tuple(args)
            if len(args) < operands or not all(isinstance(a, Tensor) for a in args[:operands]):
                raise InputError(f"layer {layer.name}: expected {operands} tensor input(s) to tap")
            out = list(args)
            for index in range(operands):
                key = (layer.name, index)
                self.inputs[key] = args[index].detach()
                if self.fixed is not None:
                    eps = self.fixed[key]
                else:
                    eps = torch.zeros_like(args[index], requires_grad=True)
                    self.eps[key] = eps
                out[index] = args[index] + eps
            return tuple(out)

        return hook


class _Recorder:
    """Forward pre-hooks that keep a bounded, strided subsample of every GEMM input (both matmul operands),
    detached, across batches: rows of the last axis, at most ``MAX_FIT_ELEMENTS`` elements per operand, as
    ``quant``'s calibration observers keep them. Non-finite inputs are noted whole (``bad``), not sampled."""

    def __init__(self, layers: Sequence[_Layer]):
        self.layers = layers
        self.inputs: dict[tuple[str, int], list[Tensor]] = {}
        self.kept: dict[tuple[str, int], int] = {}
        self.bad: list[tuple[str, int]] = []
        self._handles: list[Any] = []

    def keep(self, key: tuple[str, int], x: Tensor) -> None:
        x = x.detach()
        if key not in self.bad and not torch.isfinite(x).all():
            self.bad.append(key)
        rows = x.reshape(-1, x.shape[-1]) if x.dim() > 1 else x.reshape(-1, 1)
        room = MAX_FIT_ELEMENTS - self.kept.get(key, 0)
        if room <= 0:
            return
        allowed = max(room // rows.shape[1], 1)  # whole rows: at most one row over the cap
        if rows.shape[0] > allowed:
            rows = rows[:: -(-rows.shape[0] // allowed)]
        self.inputs.setdefault(key, []).append(rows.clone())
        self.kept[key] = self.kept.get(key, 0) + rows.numel()

    def __enter__(self) -> _Recorder:
        for layer in self.layers:
            operands = 2 if layer.is_matmul else 1

            def hook(module: nn.Module, args: tuple[Any, ...], name: str = layer.name, n: int = operands) -> None:
                for index in range(n):
                    self.keep((name, index), args[index])

            self._handles.append(layer.module.register_forward_pre_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------- keys


def _tensor_keys(layers: Sequence[_Layer], activations: bool) -> list[tuple[str, str]]:
    """(layer, operand) for every traced tensor: operand "weight" (the wbits operand) or "act" (abits)."""
    keys: list[tuple[str, str]] = []
    for layer in layers:
        if layer.is_matmul:
            if activations:
                keys += [(layer.name, "act"), (layer.name, "weight")]
        else:
            keys.append((layer.name, "weight"))
            if activations:
                keys.append((layer.name, "act"))
    return keys


def _is_activation(key: tuple[str, str], layers: Sequence[_Layer]) -> bool:
    """Whether a traced tensor is an activation (one per sample) rather than a weight."""
    return key[1] == "act" or any(layer.is_matmul and layer.name == key[0] for layer in layers)


def _tap_key(layer: _Layer, operand: str) -> tuple[str, int]:
    """The activation-tap key of an operand: the first input, or a matmul's second input for its "weight"."""
    return (layer.name, 1 if (layer.is_matmul and operand == "weight") else 0)


def _checked_loss(loss: Any, where: str) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise InputError(f"loss_fn must return a scalar tensor; got {type(loss).__name__} on {where}")
    if not torch.isfinite(loss).all():
        raise InputError(f"loss is {loss.item()} (not finite) on {where}")
    return loss.reshape(())


# ---------------------------------------------------------------------------------------------- hessian


class _HvpGraph:
    """Loss, its gradient (with graph) and the traced tensors for one data batch."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: Batch,
        layers: Sequence[_Layer],
        keys: Sequence[tuple[str, str]],
        activations: bool,
        where: str,
    ):
        by_name = {layer.name: layer for layer in layers}
        x, y = batch
        taps = _ActivationTaps(layers if activations else [])
        with taps:
            out = model(x)
        loss = _checked_loss(loss_fn(out, y), where)
        if not loss.requires_grad:
            raise InputError(f"loss does not depend on the model's quantizable weights ({where})")
        self.tensors: list[Tensor] = []
        self.values: list[Tensor] = []  # what each traced tensor perturbs: the weight, or the layer's input
        for name, operand in keys:
            layer = by_name[name]
            if operand == "weight" and not layer.is_matmul:
                self.tensors.append(layer.module.weight)
                self.values.append(layer.module.weight.detach())
            else:
                self.tensors.append(taps.eps[_tap_key(layer, operand)])
                self.values.append(taps.inputs[_tap_key(layer, operand)])
        grads = torch.autograd.grad(loss, self.tensors, create_graph=True, allow_unused=True)
        if all(g is None for g in grads):
            raise InputError(f"loss does not depend on any quantizable layer's weights or inputs ({where})")
        # tensors whose gradient is constant (loss linear in them) have a zero Hessian block
        self.live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self.grads = [grads[i] for i in self.live]
        self.weight = x.shape[0]
        self.out, self.loss = out, loss
        self._output_grad: Tensor | None = None

    def block_ggn(self, i: int, vectors: Tensor) -> Tensor:
        """(draws,) of vᵢᵀGᵢᵢvᵢ with G = Jᵀ(∂²L/∂z²)J the generalized Gauss–Newton matrix of the loss L over the
        model's outputs z (PSD when L is convex in z, as cross-entropy is): u = Jᵢvᵢ by the double-vjp trick,
        then uᵀ(∂²L/∂z²)u. ``vectors`` has a leading draws dimension; the graph is kept."""
        result = torch.zeros(vectors.shape[0], dtype=torch.float64)
        if not isinstance(self.out, Tensor) or not self.out.requires_grad:
            return result
        dummy = torch.zeros_like(self.out, requires_grad=True)
        (jt,) = torch.autograd.grad(
            self.out, self.tensors[i], grad_outputs=dummy, create_graph=True, retain_graph=True, allow_unused=True
        )
        if jt is None:
            return result
        if self._output_grad is None:
            (self._output_grad,) = torch.autograd.grad(self.loss, self.out, create_graph=True, retain_graph=True)
        batched = vectors.shape[0] > 1
        (u,) = torch.autograd.grad(
            jt, dummy, grad_outputs=vectors if batched else vectors[0], is_grads_batched=batched, retain_graph=True
        )
        if not self._output_grad.requires_grad:  # loss linear in the outputs: no curvature
            return result
        (hu,) = torch.autograd.grad(
            self._output_grad, self.out, grad_outputs=u, is_grads_batched=batched, retain_graph=True
        )
        u, hu = (u, hu) if batched else (u.unsqueeze(0), hu.unsqueeze(0))
        return (u * hu).flatten(1).sum(1).double().cpu()

    def group_vhv(self, members: Sequence[int], vectors: Sequence[Tensor]) -> Tensor:
        """(draws, members) of vᵢᵀ(H v)ᵢ with v supported on ``members`` (tensor indices); ``vectors[k]`` is
        member k's part with a leading draws dimension. The graph is kept for further products."""
        draws = vectors[0].shape[0]
        result = torch.zeros(draws, len(members), dtype=torch.float64)
        live = [k for k, i in enumerate(members) if i in self.live]
        if not live:
            return result
        batched = draws > 1
        hv = torch.autograd.grad(
            [self.grads[self.live.index(members[k])] for k in live],
            [self.tensors[members[k]] for k in live],
            grad_outputs=[vectors[k] if batched else vectors[k][0] for k in live],
            retain_graph=True,
            is_grads_batched=batched,
            allow_unused=True,
        )
        for k, h in zip(live, hv, strict=True):
            if h is None:
                continue
            h = h if batched else h.unsqueeze(0)
            result[:, k] = (vectors[k] * h).flatten(1).sum(1).double().cpu()
        return result

    def _block_hv_or_none(self, i: int, vectors: Tensor) -> Tensor | None:
        """(draws, *shape) of Hᵢᵢvᵢ for tensor ``i`` alone, or None when its Hessian block is 0 (the tensor is
        not live, or its gradient does not depend on it); ``vectors`` has a leading draws dimension. Only tensor
        ``i``'s gradient is differentiated again; the graph is kept for further products."""
        if i not in self.live:
            return None
        batched = vectors.shape[0] > 1
        (h,) = torch.autograd.grad(
            self.grads[self.live.index(i)],
            self.tensors[i],
            grad_outputs=vectors if batched else vectors[0],
            retain_graph=True,
            is_grads_batched=batched,
            allow_unused=True,
        )
        if h is None:
            return None
        return h if batched else h.unsqueeze(0)

    def block_vhv(self, i: int, vectors: Tensor) -> Tensor:
        """(draws,) of vᵢᵀHᵢᵢvᵢ for tensor ``i`` alone (zeros when its Hessian block is 0); ``vectors`` has a
        leading draws dimension. The graph is kept for further products."""
        h = self._block_hv_or_none(i, vectors)
        if h is None:
            return torch.zeros(vectors.shape[0], dtype=torch.float64)
        return (vectors * h).flatten(1).sum(1).double().cpu()

    def block_hv(self, i: int, vectors: Tensor) -> Tensor:
        """(draws, *shape) of Hᵢᵢvᵢ for tensor ``i`` alone (zeros when its Hessian block is 0); ``vectors`` has a
        leading draws dimension. The graph is kept for further products."""
        h = self._block_hv_or_none(i, vectors)
        return torch.zeros_like(vectors) if h is None else h

    def vhv(self, vectors: Sequence[Tensor], batched: bool, keep: bool) -> Tensor:
        """(draws, tensors) of vᵢᵀ(Hv)ᵢ for each draw; ``vectors[i]`` has a leading draws dimension."""
        draws = vectors[0].shape[0]
        result = torch.zeros(draws, len(vectors), dtype=torch.float64)
        if not self.live:
            return result
        outputs = [vectors[i] if batched else vectors[i][0] for i in self.live]
        hv = torch.autograd.grad(
            self.grads,
            [self.tensors[i] for i in self.live],
            grad_outputs=outputs,
            retain_graph=keep,
            is_grads_batched=batched,
            allow_unused=True,
        )
        for i, h in zip(self.live, hv, strict=True):
            if h is None:
                continue
            h = h if batched else h.unsqueeze(0)
            result[:, i] = (vectors[i] * h).flatten(1).sum(1).double().cpu()
        return result


def _probe_groups(keys: Sequence[tuple[str, str]], grouping: str) -> list[list[int]]:
    """Operand indices probed together by one random-sign product: all of them (``none``), or one group per
    role — component type and operand, e.g. every block's fc1 weight (``role``): operands of one block, strongly
    coupled through the residual stream, never share a product, so their cross terms do not enter."""
    if grouping == "none":
        return [list(range(len(keys)))]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (name, operand) in enumerate(keys):
        groups.setdefault((component_type(name), operand), []).append(i)
    return list(groups.values())


def _rademacher(shape: torch.Size, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator, device=device, dtype=dtype).mul_(2).sub_(1)


def _setup(
    model: nn.Module,
    layers: Sequence[str] | None,
    activations: bool,
    data: Batch | Iterable[Batch],
    device: str | torch.device | None,
    batch_size: int | Literal["auto"] | None = None,
) -> tuple[nn.Module, torch.device, list[_Layer], list[tuple[str, str]], list[Batch], int]:
    """What every trace estimator starts from: the model on its device, the chosen layers, the traced tensors'
    keys, the batches on that device and their sample count."""
    dev = _resolve_device(model, device)
    model = _on_device(model, dev)
    chosen = _find_layers(model, layers)
    if not activations:
        chosen = [layer for layer in chosen if not layer.is_matmul]
        if not chosen:
            raise InputError("only attention matmuls were chosen; they have no weights, so pass activations=True")
    keys = _tensor_keys(chosen, activations)
    batches = _batches(data, dev, _resolve_batch_size(model, chosen, data, batch_size, dev))
    return model, dev, chosen, keys, batches, sum(x.shape[0] for x, _ in batches)


def hessian_traces(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    *,
    layers: Sequence[str] | None = None,
    activations: bool = True,
    max_draws: int = 200,
    tol: float = 1e-3,
    rel_se: float | None = None,
    min_draws: int = 8,
    probe: Literal["shared", "per_layer", "deflated", "krylov"] = "shared",
    rank: int = DEFAULT_DEFLATION_RANK,
    batch_draws: int = DEFAULT_BATCH_DRAWS,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    batch_size: int | Literal["auto"] | None = None,
    max_seconds: float | None = None,
    se_floor: float = 0.0,
    max_rank: int = DEFAULT_MAX_RANK,
) -> Traces:
    """Hutchinson estimates of the loss-Hessian trace of every quantizable layer's operands.

    ``loss_fn(outputs, targets)`` returns the mean loss of a batch; ``data`` is one (inputs, targets) pair or
    an iterable of them (the whole of it is used for every draw). ``probe="shared"``: per draw, one
    Hessian-vector product over all traced tensors, split per tensor (cross terms vᵢᵀHᵢⱼvⱼ, zero in mean, add
    variance); ``probe="per_layer"``: per draw, one product per tensor with a probe on that tensor alone (no
    cross terms; the first-order graph is shared and only that tensor's gradient is differentiated again);
    ``probe="deflated"``: per_layer probes with Hutch++'s low-rank deflation (Meyer, Musco, Musco, Woodruff,
    arXiv 2010.09649) for every weight: ``rank`` sketch products Y = Hᵢᵢ S give an orthonormal basis Q of Hᵢᵢ's
    dominant range, ``rank`` more give Tr(QᵀHᵢᵢQ) exactly, and the draws estimate only the rest, with probes
    (I − QQᵀ)v. Its draws vary by the Hessian left outside the top directions, which on trained ViTs holds most
    of a layer's Frobenius mass (bench/sensitivity.py, part pyhessian). ``probe="krylov"``: the same split,
    Tr(QᵀHᵢᵢQ) exact plus per-layer draws on (I − QQᵀ)Hᵢᵢ(I − QQᵀ), with Q a block Krylov basis
    (span{HS, H²S, ...}, blocks of ``KRYLOV_BLOCK``, after Chen and Hallman's Krylov-aware trace estimation,
    arXiv 2205.01736, started like Hutch++ from a sketch HS): every product after the sketch both adds to the
    exact part and gives the next block, and each weight's
    basis doubles while the draws its residual spread still needs (from ``KRYLOV_PILOT_DRAWS`` pilot draws, for a
    standard error of ``rel_se`` of its floored scale, or ``KRYLOV_DEFAULT_TARGET`` without one; at most
    ``max_draws``, the run's own cost budget) exceed
    ``GROWTH_RATIO`` × the doubling's products, up to ``max_rank``, the weight's size (then the trace is exact) and
    the basis memory budget (``BASIS_BUDGET_BYTES`` for all weights). The last stage's pilot draws count as the
    first draws. Activation tensors (one per data batch, so a basis would be per batch and ``rank`` times their
    size) keep plain per-layer probes.
    ``batch_draws`` draws share a batched second backward. Stopping rule: with ``rel_se``, an estimate is done
    when its standard error is at most ``rel_se`` times its magnitude after ``min_draws`` draws (per_layer:
    each stops on its own; shared: all run until every one is done); without it, PyHessian's rule (an estimate
    is frozen at the first draw where its running mean moves by less than ``tol`` relative to the previous
    one). The run stops when all are done or after ``max_draws`` (``tol=0``/``rel_se=0``: always
    ``max_draws``). ``Traces.weight_se``/``act_se``: each estimate's standard error. Draw ``j`` uses a
    generator seeded from ``(seed, j)``, so results do not depend on ``batch_draws``. ``max_seconds``: also stop
    after this much wall time (checked between batches of draws; for runs at a fixed cost: without ``rel_se``,
    Krylov bases stop growing at ``KRYLOV_TIME_SHARE`` of it, and per-layer probes then draw for the half of the
    estimates worth the fewest plain per-layer draws — their draws, or for a Krylov-deflated weight a plain
    draw's variance over its squared standard error — so that every layer ends as good as a loop giving each
    layer the same number of plain draws in that time, and better where deflation paid). ``se_floor``: layers
    that do not matter need not be resolved relative to themselves: the standard-error target is ``rel_se``
    times max(|estimate|, ``se_floor`` × the median per-element |trace| of its kind (weights or activations) ×
    its elements), so a trace near zero (a layer of indefinite curvature, whose score is small) stops once its
    per-element error is within ``rel_se × se_floor`` of the typical layer's per-element curvature. ``device``: where to
    compute (default: the model's; the model is copied if it lives elsewhere). ``progress``: a tqdm bar on
    stderr.
    """
    if max_draws < 1:
        raise InputError(f"max_draws must be at least 1, got {max_draws}")
    if batch_draws < 1:
        raise InputError(f"batch_draws must be at least 1, got {batch_draws}")
    if not tol >= 0:
        raise InputError(f"tol must be >= 0, got {tol}")
    if rel_se is not None and not (rel_se >= 0 and math.isfinite(rel_se)):
        raise InputError(f"rel_se must be a finite number >= 0, got {rel_se}")
    if min_draws < 2:
        raise InputError(f"min_draws must be at least 2 (a standard error needs two draws), got {min_draws}")
    if probe not in ("shared", "per_layer", "deflated", "krylov"):
        raise InputError(f"unknown probe {probe!r}; choose shared, per_layer, deflated or krylov")
    if probe == "deflated" and rank < 1:
        raise InputError(f"rank must be at least 1 for deflated probes, got {rank}")
    if probe == "krylov" and max_rank < 0:
        raise InputError(f"max_rank must be at least 0 for krylov probes, got {max_rank}")
    start = time.perf_counter()
    model, dev, chosen, keys, batches, samples = _setup(model, layers, activations, data, device, batch_size)
    weights = [layer.module.weight for layer in chosen if not layer.is_matmul]
    deflated_keys = [
        i for i, key in enumerate(keys) if probe in ("deflated", "krylov") and not _is_activation(key, chosen)
    ]

    sums = np.zeros(len(keys))
    squares = np.zeros(len(keys))  # Σ draw², for each estimate's standard error
    counts = np.zeros(len(keys), dtype=np.int64)
    previous = np.full(len(keys), np.nan)
    active = np.ones(len(keys), dtype=bool)
    numel: dict[tuple[str, str], int] = {}
    draws_run = 0
    bar = tqdm(total=max_draws, desc="hessian traces", unit="draw", disable=not progress, file=sys.stderr)
    with _prepared(model, dev, weights), bar:
        bases: dict[int, Tensor] = {}  # deflated weight index -> (rank, *shape) orthonormal basis
        exact_part = np.zeros(len(keys))  # Tr(QᵀHQ) of each deflated weight, 0 elsewhere
        graphs = _Graphs(model, loss_fn, batches, chosen, keys, activations)
        # a run at a fixed cost (max_seconds, no rel_se): Krylov bases stop growing at KRYLOV_TIME_SHARE of it, and
        # once every estimate has min_draws, each chunk draws only for the half worth the fewest plain draws
        worst_first = max_seconds is not None and not rel_se and probe != "shared"
        plain_variance: dict[int, float] = {}  # krylov: a plain draw's variance per deflated weight
        deadline = None if max_seconds is None else start + KRYLOV_TIME_SHARE * max_seconds
        if deflated_keys and probe == "deflated":
            _deflate(graphs, deflated_keys, rank, seed, samples, batch_draws, bases, exact_part)
        elif deflated_keys:
            target = rel_se if rel_se else KRYLOV_DEFAULT_TARGET
            pilots = _deflate_krylov(graphs, deflated_keys, max_rank, seed, samples, batch_draws, bases, exact_part,
                                     target, se_floor, deadline, plain_variance, max_draws)  # fmt: skip
            for i, (total, total_sq, n) in pilots.items():  # the final basis's pilot draws are its first draws
                sums[i], squares[i], counts[i] = total, total_sq, n
        while draws_run < max_draws and active.any():
            if max_seconds is not None and draws_run >= 2 and time.perf_counter() - start >= max_seconds:
                break
            chunk = min(batch_draws, max_draws - draws_run)
            drawn = active.copy()  # the estimates this chunk draws for
            if worst_first and numel and (counts[active] >= min_draws).all():
                # worth: the plain per-layer draws each estimate is as good as (its draws, or for a Krylov-deflated
                # weight a plain draw's variance over its squared standard error); draw for the lower half
                errors = _standard_errors(sums, squares, counts)
                worth = counts.astype(float)
                for i, variance in plain_variance.items():
                    worth[i] = variance / errors[i] ** 2 if errors[i] > 0 else math.inf
                live = active & np.isfinite(worth)
                if live.any():
                    drawn = live & (worth <= np.median(worth[live]))
            generators = [
                torch.Generator(device=dev).manual_seed(seed * 1_000_003 + draws_run + j) for j in range(chunk)
            ]
            estimates = torch.zeros(chunk, len(keys), dtype=torch.float64)
            for index, batch in enumerate(batches):
                single = len(batches) == 1
                graph = graphs(index)  # a single batch's graph is built once, by the deflation or here
                if not numel:
                    for key, tensor in zip(keys, graph.tensors, strict=True):
                        numel[key] = tensor.numel() // (batch[0].shape[0] if _is_activation(key, chosen) else 1)
                if index == 0:  # a draw's weight vector is the same for every batch: v·(Σ_b H_b)·v
                    weight_vectors = {
                        i: torch.stack([_rademacher(t.shape, g, dev, t.dtype) for g in generators])
                        for i, t in enumerate(graph.tensors)
                        if not _is_activation(keys[i], chosen)
                    }
                    for i, basis in bases.items():  # the probe's part outside the basis: (I − QQᵀ)v
                        flat, q = weight_vectors[i].flatten(1), basis.flatten(1)
                        weight_vectors[i] = (flat - (flat @ q.T) @ q).view_as(weight_vectors[i])
                vectors = [
                    weight_vectors[i]
                    if i in weight_vectors
                    else torch.stack([_rademacher(t.shape, g, dev, t.dtype) for g in generators])
                    for i, t in enumerate(graph.tensors)
                ]
                if probe == "shared":
                    estimates += graph.vhv(vectors, batched=chunk > 1, keep=single) * (graph.weight / samples)
                else:  # one probe per estimate, only for the estimates still running (and drawn for)
                    for i in np.flatnonzero(drawn):
                        estimates[:, i] += graph.block_vhv(int(i), vectors[i]) * (graph.weight / samples)
                del graph, vectors  # one autograd graph alive at a time (a single batch's stays cached)
            estimates += torch.from_numpy(exact_part)
            for row in estimates.numpy():
                draws_run += 1
                adding = active & drawn
                sums[adding] += row[adding]
                squares[adding] += row[adding] ** 2
                counts[adding] += 1
                means = sums / np.maximum(counts, 1)
                if rel_se is not None:
                    # stop an estimate when its standard error is within rel_se of its magnitude; with a shared
                    # probe every estimate keeps averaging (one product serves all of them) until all are met
                    if rel_se > 0 and draws_run >= min_draws:
                        errors = _standard_errors(sums, squares, counts)
                        scale = _se_scale(means, keys, numel, chosen, se_floor)
                        met = (counts >= min_draws) & (errors <= rel_se * scale)
                        if probe != "shared":
                            active &= ~met
                        elif met.all():
                            active[:] = False
                elif draws_run > 1 and tol > 0:
                    settled = np.abs(means - previous) <= tol * np.abs(previous)
                    active &= ~settled
                previous = means
                bar.update(1)
                if not active.any():
                    break
            bar.set_postfix(unsettled=int(active.sum()))
    means = sums / np.maximum(counts, 1)
    errors = _standard_errors(sums, squares, counts)
    traces = _traces(
        "hessian", chosen, keys, means, counts, numel, draws_run, samples, time.perf_counter() - start, errors
    )
    if not deflated_keys:
        return traces
    ranks = {keys[i][0]: len(basis) for i, basis in bases.items()}
    return replace(traces, weight_rank=tuple(ranks.get(name, 0) for name in traces.layers))


def _se_scale(
    means: np.ndarray,
    keys: Sequence[tuple[str, str]],
    numel: Mapping[tuple[str, str], int],
    chosen: Sequence[_Layer],
    se_floor: float,
) -> np.ndarray:
    """What each estimate's standard error is measured against: max(|mean|, se_floor × the median per-element
    |mean| of its kind (weight or activation) × its elements)."""
    if se_floor <= 0 or not numel:
        return np.abs(means)
    sizes = np.array([max(numel[key], 1) for key in keys], dtype=float)
    kinds = np.array([_is_activation(key, chosen) for key in keys])
    return _floored_scale(np.abs(means), sizes, kinds, se_floor)


def _floored_scale(magnitude: np.ndarray, sizes: np.ndarray, kinds: np.ndarray, se_floor: float) -> np.ndarray:
    """max(magnitude, se_floor × the median per-element magnitude of each one's kind × its size)."""
    floor = np.zeros(len(magnitude))
    for kind in np.unique(kinds):
        members = kinds == kind
        floor[members] = se_floor * float(np.median(magnitude[members] / sizes[members])) * sizes[members]
    return np.maximum(magnitude, floor)


class _Graphs:
    """The autograd graph of each data batch in turn, one alive at a time; a single batch's is built once and
    kept (``cached``) for the draws that follow."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Sequence[Batch],
        chosen: Sequence[_Layer],
        keys: Sequence[tuple[str, str]],
        activations: bool,
    ):
        self.model, self.loss_fn, self.batches = model, loss_fn, batches
        self.chosen, self.keys, self.activations = chosen, keys, activations
        self.cached: _HvpGraph | None = None

    def __call__(self, index: int) -> _HvpGraph:
        if self.cached is not None:
            return self.cached
        batch = self.batches[index]
        graph = _HvpGraph(self.model, self.loss_fn, batch, self.chosen, self.keys, self.activations,
                          f"data batch {index}")  # fmt: skip
        if len(self.batches) == 1:
            self.cached = graph
        return graph


def _block_products(graph: _HvpGraph, i: int, vectors: Tensor, batch_draws: int) -> Tensor:
    """(k, *shape) Hᵢᵢvᵢ for (k, *shape) vectors, ``batch_draws`` of them per batched second backward."""
    return torch.cat([graph.block_hv(i, vectors[a : a + batch_draws]) for a in range(0, len(vectors), batch_draws)])


def _deflate(
    graph_of: _Graphs,
    members: Sequence[int],
    rank: int,
    seed: int,
    samples: int,
    batch_draws: int,
    bases: dict[int, Tensor],
    exact_part: np.ndarray,
) -> None:
    """Hutch++'s first two stages for the weights ``members``: Y = H S over all batches (``rank`` Rademacher
    sketch probes each), Q = orth(Y) into ``bases`` (fewer columns when the block's rank is lower), and
    Tr(QᵀHQ) into ``exact_part``."""
    batches = graph_of.batches

    def products(graph: _HvpGraph, i: int, vectors: Tensor) -> Tensor:
        return _block_products(graph, i, vectors, batch_draws)

    def sketch(i: int, tensor: Tensor) -> Tensor:  # the same for every batch, made again rather than kept
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 999_983 + i)  # apart from the draws' seeds
        shape = torch.Size((min(rank, tensor.numel()), *tensor.shape))
        return _rademacher(shape, generator, torch.device("cpu"), tensor.dtype).to(tensor.device)

    sums: dict[int, Tensor] = {}  # memory: rank x each weight's elements, then the bases in their place
    for index in range(len(batches)):
        graph = graph_of(index)
        share = graph.weight / samples
        for i in members:
            part = products(graph, i, sketch(i, graph.tensors[i])) * share
            sums[i] = part if i not in sums else sums[i] + part
        del graph  # one autograd graph alive at a time (a single batch's stays cached)
    for i in members:
        total = sums.pop(i)
        q, r = torch.linalg.qr(total.flatten(1).double().T)
        keep = r.diagonal().abs() > 1e-10 * max(float(r.diagonal().abs().max()), 1e-300)  # drop a null range
        bases[i] = q[:, keep].T.to(total.dtype).reshape(-1, *total.shape[1:])
        del total, q, r
    for index in range(len(batches)):
        graph = graph_of(index)
        for i in members:
            if len(bases[i]):
                hq = products(graph, i, bases[i])
                exact_part[i] += float((hq.double() * bases[i].double()).sum()) * graph.weight / samples
        del graph


def _deflate_krylov(
    graph_of: _Graphs,
    members: Sequence[int],
    max_rank: int,
    seed: int,
    samples: int,
    batch_draws: int,
    bases: dict[int, Tensor],
    exact_part: np.ndarray,
    rel_target: float,
    se_floor: float,
    deadline: float | None,
    plain_variance: dict[int, float],
    max_draws: float,
) -> dict[int, tuple[float, float, int]]:
    """Block Krylov bases for the weights ``members`` (``hessian_traces``' ``probe="krylov"``): fills ``bases``
    (rank, *shape) and ``exact_part`` (Tr(QᵀHQ)); returns each weight's final
    pilot draws as (Σ draw, Σ draw², draws), every draw already including its exact part. Past ``deadline``
    (``time.perf_counter()``) no basis grows further: a stage under way ends at its current block. Fills
    ``plain_variance`` with each weight's estimated variance of a plain (undeflated) per-layer draw."""
    batches = graph_of.batches

    def products(work: Mapping[int, Tensor]) -> dict[int, Tensor]:
        """(k, n) flat Hᵢᵢ vᵢ over all batches for each member's (k, n) flat vectors."""
        out: dict[int, Tensor] = {}
        for index in range(len(batches)):
            graph = graph_of(index)
            share = graph.weight / samples
            for i, flat in work.items():
                part = _block_products(graph, i, flat.view(-1, *shape[i]), batch_draws).flatten(1) * share
                out[i] = part if i not in out else out[i] + part
            del graph  # one autograd graph alive at a time (a single batch's stays cached)
        return out

    first = graph_of(0)
    shape = {i: first.tensors[i].shape for i in members}
    device, dtype = first.tensors[members[0]].device, first.tensors[members[0]].dtype
    del first
    size = {i: int(math.prod(shape[i])) for i in members}
    budget_rank = BASIS_BUDGET_BYTES // (4 * max(sum(size.values()), 1))
    cap = {i: min(max_rank, size[i], budget_rank) for i in members}
    generators = {i: torch.Generator().manual_seed(seed * 1_000_003 + 999_983 + i) for i in members}

    def random_block(i: int, k: int) -> Tensor:
        return _rademacher(torch.Size((k, size[i])), generators[i], torch.device("cpu"), dtype).to(device)

    def next_block(i: int, basis: Tensor, candidates: Tensor, k: int) -> Tensor:
        """k orthonormal rows orthogonal to ``basis``, from ``candidates`` (Krylov: H times the last block), topped
        up with random rows when the candidates' span is exhausted (an invariant subspace)."""
        kept = torch.zeros(0, size[i], dtype=torch.float64, device=device)
        basis64 = basis.double()
        for rows in (candidates.double(), random_block(i, k).double(), random_block(i, k).double()):
            norms = rows.norm(dim=1)
            for _ in range(2):  # classical Gram-Schmidt, twice: orthogonal to working precision
                rows = rows - (rows @ basis64.T) @ basis64
                rows = rows - (rows @ kept.T) @ kept
            q, r = torch.linalg.qr(rows.T)
            good = r.diagonal().abs() > 1e-6 * torch.clamp(norms.max(), min=1e-300)
            kept = torch.cat([kept, q[:, good].T[: k - len(kept)]])
            if len(kept) >= k:
                break
        return kept.to(dtype)

    basis = {i: torch.zeros(0, size[i], dtype=dtype, device=device) for i in members}
    goal = {i: min(KRYLOV_BLOCK, cap[i]) for i in members}
    pending: dict[int, Tensor] = {}  # the next block to multiply by H, per weight
    # the first block is orth(H S), as Hutch++'s sketch: a random start would spend it on random directions
    sketches = products({i: random_block(i, goal[i]) for i in members if goal[i] > 0})
    for i, sketch in sketches.items():
        pending[i] = next_block(i, basis[i], sketch, goal[i])
    del sketches
    last: dict[int, Tensor] = {}  # H times each weight's latest block: the next Krylov candidates
    hq_sq = dict.fromkeys(members, 0.0)
    qhq_sq = dict.fromkeys(members, 0.0)
    pilots: dict[int, tuple[float, float, int]] = {}
    estimate = {i: 0.0 for i in members}
    growing = {i for i in members if goal[i] > 0}
    stage = 0
    while growing:
        while any(len(basis[i]) < goal[i] for i in growing):
            if deadline is not None and time.perf_counter() >= deadline and all(len(basis[i]) for i in growing):
                for i in growing:
                    goal[i] = len(basis[i])
                break
            work = {i: pending[i] for i in growing if len(basis[i]) < goal[i]}
            for i, h in products(work).items():
                block = work[i]
                exact_part[i] += float((block.double() * h.double()).sum())
                # ‖HQ‖² and ‖QᵀHQ‖² (its block column up to this block: the earlier blocks' part twice, by symmetry)
                hq_sq[i] += float(h.double().pow(2).sum())
                earlier = (basis[i].double() @ h.double().T).pow(2).sum() if len(basis[i]) else 0.0
                qhq_sq[i] += 2 * float(earlier) + float((block.double() @ h.double().T).pow(2).sum())
                basis[i] = torch.cat([basis[i], block])
                last[i] = h
                room = goal[i] - len(basis[i])
                if room > 0:
                    pending[i] = next_block(i, basis[i], h, min(KRYLOV_BLOCK, room))
        # pilot draws on the rest, (I − QQᵀ)v, for every weight still growing
        probes = {}
        for i in growing:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + 499_979 + 1009 * i + stage)
            v = _rademacher(torch.Size((KRYLOV_PILOT_DRAWS, size[i])), gen, torch.device("cpu"), dtype).to(device)
            probes[i] = v - (v @ basis[i].T) @ basis[i]
        spread = {}
        for i, h in products(probes).items():
            draws = (probes[i].double() * h.double()).sum(1).cpu().numpy() + exact_part[i]
            pilots[i] = (float(draws.sum()), float((draws**2).sum()), len(draws))
            estimate[i] = float(draws.mean())
            spread[i] = float(draws.std(ddof=1))
        scales = _floored_scale(
            np.array([abs(estimate[i]) for i in members]),
            np.array([size[i] for i in members], dtype=float),
            np.zeros(len(members)),
            se_floor,
        )
        scale = dict(zip(members, scales.tolist(), strict=True))
        for i in sorted(growing):
            tau = rel_target * scale[i]
            bigger = min(2 * goal[i], cap[i])
            # the draws still needed, as far as the run will draw: max_draws is the caller's cost budget, and a
            # basis that grows past what its draws would cost spends more than the caller asked for
            needed = min((spread[i] / tau) ** 2 if tau > 0 else math.inf, max_draws)
            late = deadline is not None and time.perf_counter() >= deadline
            if not late and spread[i] > 0 and bigger > goal[i] and needed > GROWTH_RATIO * (bigger - goal[i]):
                goal[i] = bigger
                pending[i] = next_block(i, basis[i], last[i], min(KRYLOV_BLOCK, bigger - len(basis[i])))
            else:
                growing.discard(i)
        stage += 1
    for i in members:
        bases[i] = basis[i].reshape(-1, *shape[i])
        if i in pilots:  # a plain draw's variance, 2‖H‖²: 2‖PHP‖² + 4‖PH(I − P)‖² + the rest's (the pilots')
            total, total_sq, n = pilots[i]
            rest = max(total_sq - total * total / n, 0.0) / max(n - 1, 1)
            plain_variance[i] = 2 * qhq_sq[i] + 4 * max(hq_sq[i] - qhq_sq[i], 0.0) + rest
    return pilots


def _standard_errors(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standard error of each running mean from its sum and sum of squares (NaN below two draws)."""
    n = counts.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.maximum(squares - sums**2 / n, 0.0) / (n - 1)
        return np.where(n > 1, np.sqrt(variance / n), np.nan)


def _traces(
    method: Literal["hessian", "fisher"],
    layers: Sequence[_Layer],
    keys: Sequence[tuple[str, str]],
    values: np.ndarray,
    counts: np.ndarray,
    numel: Mapping[tuple[str, str], int],
    draws: int,
    samples: int,
    seconds: float,
    errors: np.ndarray | None = None,
) -> Traces:
    value = dict(zip(keys, values.tolist(), strict=True))
    se = dict(zip(keys, (np.zeros(len(keys)) if errors is None else errors).tolist(), strict=True))
    count = dict(zip(keys, counts.tolist(), strict=True))
    names = tuple(layer.name for layer in layers)
    return Traces(
        method=method,
        layers=names,
        weight_trace=tuple(float(value[(n, "weight")]) for n in names),
        weight_numel=tuple(int(numel[(n, "weight")]) for n in names),
        act_trace=tuple(float(value.get((n, "act"), math.nan)) for n in names),
        act_numel=tuple(int(numel.get((n, "act"), 0)) for n in names),
        weight_draws=tuple(int(count[(n, "weight")]) for n in names),
        act_draws=tuple(int(count.get((n, "act"), 0)) for n in names),
        draws=draws,
        samples=samples,
        seconds=seconds,
        weight_se=tuple(float(se[(n, "weight")]) for n in names),
        act_se=tuple(float(se.get((n, "act"), math.nan)) for n in names),
    )


# ---------------------------------------------------------------------------------------------- fisher


def fisher_traces(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    *,
    layers: Sequence[str] | None = None,
    activations: bool = True,
    normalize: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    batch_size: int | Literal["auto"] | None = None,
) -> Traces:
    """Empirical-Fisher traces: Σ over a tensor's elements of the mean over samples of the squared per-sample
    gradient, for every quantizable layer's operands (same layout and scale conventions as ``hessian_traces``).

    ``normalize``: type-aware scaling as in LampQ (arXiv 2511.10004, Ω_i = α_t·tr(F_i)): each per-element
    trace F_i/n_i is divided by the mean of F/n over the layers of its component type (``component_type``),
    separately for the weight and activation operands. LampQ's exact α_t could not be read here; this is our
    reading of "type-aware" (each component type's mean becomes 1). Per-sample gradients come from
    ``torch.func.vmap`` over ``torch.func.grad`` of the loss of one sample (``loss_fn`` on a batch of one).
    """
    from torch.func import functional_call, grad, vmap

    start = time.perf_counter()
    model, dev, chosen, keys, batches, samples = _setup(model, layers, activations, data, device, batch_size)
    by_name = {layer.name: layer for layer in chosen}
    names = dict(model.named_parameters())
    param_of = {id(p): n for n, p in names.items()}
    weight_keys = [k for k in keys if k[1] == "weight" and not by_name[k[0]].is_matmul]
    act_keys = [k for k in keys if k not in weight_keys]
    weights = {param_of[id(by_name[n].module.weight)]: by_name[n].module.weight.detach() for n, _ in weight_keys}
    weight_param = {k: param_of[id(by_name[k[0]].module.weight)] for k in weight_keys}

    # one sample's activation shapes, for the zero perturbations under vmap
    probe = _ActivationTaps(chosen if activations else [])
    with _prepared(model, dev, []), torch.no_grad(), probe:
        model(batches[0][0][:1])
    eps_shapes = {key: t.shape for key, t in probe.eps.items()}

    def sample_loss(w: dict[str, Tensor], eps: dict[tuple[str, int], Tensor], x1: Tensor, y1: Tensor) -> Tensor:
        with _ActivationTaps(chosen if activations else [], fixed=eps):
            out = functional_call(model, w, (x1.unsqueeze(0),))
        target = y1.unsqueeze(0) if isinstance(y1, Tensor) else y1
        return loss_fn(out, target).reshape(())

    per_sample = vmap(grad(sample_loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))
    totals = np.zeros(len(keys))
    with _prepared(model, dev, []):
        for index, (x, y) in enumerate(tqdm(batches, desc="fisher", disable=not progress, file=sys.stderr)):
            eps = {key: torch.zeros(shape, device=dev) for key, shape in eps_shapes.items()}
            with torch.no_grad(), _ActivationTaps(chosen if activations else [], fixed=eps):
                _checked_loss(loss_fn(model(x), y), f"data batch {index}")
            grads_w, grads_a = per_sample(weights, eps, x, y)
            for column, key in enumerate(keys):
                is_weight = key in weight_keys
                g = grads_w[weight_param[key]] if is_weight else grads_a[_tap_key(by_name[key[0]], key[1])]
                totals[column] += float(g.double().pow(2).sum())
    values = totals / samples
    numel: dict[tuple[str, str], int] = {}
    for key in weight_keys:
        numel[key] = by_name[key[0]].module.weight.numel()
    for key in act_keys:
        numel[key] = math.prod(eps_shapes[_tap_key(by_name[key[0]], key[1])])
    if not np.any(values[[keys.index(k) for k in weight_keys]] > 0) and weight_keys:
        raise InputError("loss does not depend on the model's quantizable weights (all Fisher traces are 0)")
    if normalize:
        values = _normalize_by_type(keys, values, numel)
    counts = np.zeros(len(keys), dtype=np.int64)
    return _traces("fisher", chosen, keys, values, counts, numel, 0, samples, time.perf_counter() - start)


fisher_scores = fisher_traces
"""The contract's name for :func:`fisher_traces` (it returns traces, not scores; ``scores_from_traces`` makes
scores of them)."""


def _normalize_by_type(
    keys: Sequence[tuple[str, str]], values: np.ndarray, numel: Mapping[tuple[str, str], int]
) -> np.ndarray:
    """Divide each trace by the mean per-element trace of its (component type, operand) group."""
    per_element = np.array([v / max(numel[k], 1) for k, v in zip(keys, values, strict=True)])
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (name, operand) in enumerate(keys):
        groups.setdefault((component_type(name), operand), []).append(i)
    out = values.copy()
    for members in groups.values():
        mean = per_element[members].mean()
        if mean > 0:
            out[members] = values[members] / mean
    return out


# ---------------------------------------------------------------------------------------------- scores


def _fit_operands(
    chosen: Sequence[_Layer],
    recorded: _Recorded,
    weight_bits: Sequence[int],
    act_bits: Sequence[int],
    kinds: Mapping[str, str],
    act_method: str,
    progress: bool = False,
) -> dict[tuple[str, str, int], Any]:
    """``quant``'s quantizer for every (layer, operand, bits): weights symmetric per output channel fitted as
    ``quantize_`` fits them; activations per tensor over the recorded calibration inputs by ``act_method``, of
    kind ``kinds[layer]`` (default uniform) for the first operand and uniform for a matmul's second operand
    (kᵀ, v). ``progress``: a tqdm bar over the layers on stderr (minutes on a big model with MSE fits)."""
    from quant import primitives as P

    if act_method not in P.METHODS:
        raise InputError(f"unknown calibration method {act_method!r}; choose from {', '.join(P.METHODS)}")
    # weights first: a bad weight makes every later input bad too
    for layer in chosen:
        if not layer.is_matmul and not torch.isfinite(layer.module.weight).all():
            raise InputError(f"layer {layer.name}: weight has NaN or infinite values")
    for name, index in recorded.bad:
        raise InputError(f"layer {name}: input {index} has NaN or infinite values on the calibration data")
    inputs = recorded.inputs
    fitted: dict[tuple[str, str, int], Any] = {}
    for layer in tqdm(chosen, desc="fitting quantizers", unit="layer", disable=not progress, file=sys.stderr):
        for bits in weight_bits:
            if layer.is_matmul:
                p = P.fit(inputs[_tap_key(layer, "weight")], bits, "uniform", method=act_method)
            else:
                weight = layer.module.weight.detach()
                axis = 0 if weight.dim() > 1 else None
                p = P.fit(weight, bits, "uniform", method=P.WEIGHT_METHOD, symmetric=True, axis=axis)
            fitted[(layer.name, "weight", bits)] = p
        for bits in act_bits:
            p = P.fit(inputs[_tap_key(layer, "act")], bits, kinds.get(layer.name, "uniform"), method=act_method)
            fitted[(layer.name, "act", bits)] = p
    return fitted


@dataclass(frozen=True)
class _Recorded:
    """Subsampled GEMM inputs for fitting (``_Recorder``) and the operands that had non-finite values."""

    inputs: dict[tuple[str, int], Tensor]
    bad: tuple[tuple[str, int], ...]


def _recorded_inputs(model: nn.Module, chosen: Sequence[_Layer], batches: Sequence[Batch]) -> _Recorded:
    """A bounded subsample of every GEMM input (both matmul operands) over ``batches``, as (rows, last axis)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Recorder(chosen) as recorder:
            for x, _ in batches:
                model(x)
    finally:
        model.train(training)
    return _Recorded({key: torch.cat(parts) for key, parts in recorder.inputs.items()}, tuple(recorder.bad))


def _activation_errors(
    model: nn.Module,
    chosen: Sequence[_Layer],
    batches: Sequence[Batch],
    fitted: Mapping[tuple[str, str, int], Any],
    bits_of: Mapping[str, Sequence[int]],
) -> dict[tuple[str, str, int], float]:
    """Σ over ``batches`` of ‖Q(A) − A‖² for every activation operand and bit width, one batch at a time."""
    from quant import primitives as P

    totals: dict[tuple[str, str, int], float] = {}
    handles = []

    def add(layer: _Layer, operand: str, value: Tensor) -> None:
        for bits in bits_of[operand]:
            key = (layer.name, operand, bits)
            totals[key] = totals.get(key, 0.0) + P.squared_error(value.detach(), fitted[key])

    for layer in chosen:

        def hook(module: nn.Module, args: tuple[Any, ...], layer: _Layer = layer) -> None:
            add(layer, "act", args[0])
            if layer.is_matmul:
                add(layer, "weight", args[1])

        handles.append(layer.module.register_forward_pre_hook(hook))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return totals


def _checked_kinds(act_kinds: Mapping[str, str] | None, chosen: Sequence[_Layer]) -> dict[str, str]:
    kinds = dict(act_kinds or {})
    unknown = sorted(set(kinds) - {layer.name for layer in chosen})
    if unknown:
        raise InputError(f"act_kinds names layers {unknown} that are not scored")
    return kinds


def quantization_errors(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    weight_bits: Iterable[int],
    act_bits: Iterable[int],
    *,
    layers: Sequence[str] | None = None,
    act_kinds: Mapping[str, str] | None = None,
    act_method: str = "minmax",
    device: str | torch.device | None = None,
    batch_size: int | Literal["auto"] | None = None,
) -> pd.DataFrame:
    """‖Q(x) − x‖² of each layer's operands at each bit width, with ``quant``'s quantizers.

    Rows: layer, operand ("weight": the wbits operand; "act": the input activation), bits, error. Weights are
    quantized per output channel; activations per tensor over all calibration samples (their inputs are
    recorded by hooks on ``data``) with calibration method ``act_method`` (as ``quant.calibrate_``'s
    ``method``), and their error is reported per sample (sum over samples / samples). ``act_kinds``:
    non-uniform activation quantizers per layer (log2, twin_uniform, ...; default uniform) for the first
    operand; a matmul's second operand (kᵀ, v) is quantized uniform. Activation quantizers are fitted on a
    bounded subsample of each input (``MAX_FIT_ELEMENTS``) and the errors summed batch by batch (``batch_size``
    samples at a time), so memory does not grow with the data.
    """
    from quant import primitives as P

    dev = _resolve_device(model, device)
    model = _on_device(model, dev)
    chosen = _find_layers(model, layers)
    batches = _batches(data, dev, _resolve_batch_size(model, chosen, data, batch_size, dev))
    samples = sum(x.shape[0] for x, _ in batches)
    kinds = _checked_kinds(act_kinds, chosen)
    wbits, abits = sorted(set(weight_bits)), sorted(set(act_bits))
    fitted = _fit_operands(chosen, _recorded_inputs(model, chosen, batches), wbits, abits, kinds, act_method)
    act_errors = _activation_errors(model, chosen, batches, fitted, {"weight": wbits, "act": abits})
    rows: list[dict[str, Any]] = []
    for layer in chosen:
        for operand, bit_set in (("weight", wbits), ("act", abits)):
            for bits in bit_set:
                if operand == "weight" and not layer.is_matmul:
                    error = P.squared_error(layer.module.weight.detach(), fitted[(layer.name, operand, bits)])
                else:
                    error = act_errors[(layer.name, operand, bits)] / samples
                rows.append({"layer": layer.name, "operand": operand, "bits": bits, "error": error})
    return pd.DataFrame(rows, columns=["layer", "operand", "bits", "error"])


def hessian_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    bit_pairs: Iterable[tuple[int, int]],
    *,
    calibration: Batch | Iterable[Batch] | None = None,
    layers: Sequence[str] | None = None,
    activations: bool = True,
    act_kinds: Mapping[str, str] | None = None,
    act_method: str = "minmax",
    draws: int | None = None,
    batch_draws: int = DEFAULT_BATCH_DRAWS,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    batch_size: int | Literal["auto"] | None = None,
) -> pd.DataFrame:
    """Ω_i(w, a) = ΔWᵢᵀ H_w,i ΔWᵢ + ΔAᵢᵀ H_a,i ΔAᵢ with Δ the actual quantization error at each bit width.

    HAWQ-V2's score Tr(H)/n·‖Δ‖² (``hessian_traces`` + ``scores_from_traces``) is this quadratic form's mean
    over error vectors of the same norm pointing every way; the real errors do not point every way (rows of a
    per-channel weight quantizer err together, inputs are correlated), so the form itself ranks layers better:
    on the digits ViT its Spearman correlation with the measured single-layer loss increase was 0.80–0.83
    (four disjoint 256-image samples) against 0.75–0.78 for the trace score (bench/sensitivity.py). Same
    columns and scale as ``scores_from_traces`` (layer, wbits, abits, sensitivity, weight_sensitivity,
    act_sensitivity; ≈ 2 × the second-order loss increase), so either goes to the ILP.

    Errors: weights with ``quant``'s weight quantizer; activations (and a matmul's second operand) with
    per-tensor quantizers fitted on ``calibration`` (default ``data``) by ``act_method``, of kind
    ``act_kinds[layer]``, applied to the inputs each ``data`` batch produces. ``draws=None``: exact, one
    Hessian-vector product per operand and bit width (``batch_draws`` of them share one batched second
    backward). ``draws=k``: for big models, k products per bit width, each operand's error times a random sign
    (the cross terms between operands have zero mean, as in Hutchinson's estimator), grouped as
    ``HessianQuadraticConfig``'s default ``grouping="auto"``: by role, k // roles per role, when the model has at
    most k roles, else all operands at once. A negative estimate counts by its magnitude, as in
    ``scores_from_traces``.
    """
    if draws is not None and draws < 1:
        raise InputError(f"draws must be at least 1 (or None for the exact form), got {draws}")
    config = HessianQuadraticConfig(
        layers=None if layers is None else tuple(layers),
        activations=activations,
        act_method=act_method,
        act_kinds=act_kinds,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        device=None if device is None else str(device),
        estimator="exact" if draws is None else "random_sign",
        draws=draws or 1,
        batch_draws=batch_draws,
    )
    return _quadratic_scores(model, loss_fn, data, _check_bit_pairs(bit_pairs), config, calibration)


@register_scorer(HessianQuadraticConfig)
def _quadratic_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    config: HessianQuadraticConfig,
    calibration: Batch | Iterable[Batch] | None,
) -> pd.DataFrame:
    """``hessian_scores`` for a config (the registry's entry); the estimator follows ``config.chosen``."""
    from quant import primitives as P

    pairs = _check_bit_pairs(pairs)
    activations, batch_draws, seed, progress = config.activations, config.batch_draws, config.seed, config.progress
    model, dev, chosen, keys, batches, samples = _setup(
        model, config.layers, activations, data, config.device, config.batch_size
    )
    calib = (
        batches
        if calibration is None
        else _batches(calibration, dev, _resolve_batch_size(model, chosen, calibration, config.batch_size, dev))
    )
    kinds = _checked_kinds(config.act_kinds, chosen)
    act_method = config.act_method
    wbits, abits = sorted({w for w, _ in pairs}), sorted({a for _, a in pairs})
    fitted = _fit_operands(chosen, _recorded_inputs(model, chosen, calib), wbits, abits, kinds, act_method, progress)
    bits_of = {"weight": wbits, "act": abits}
    exact_products = sum(len(bits_of[key[1]]) for key in keys)
    estimator = config.chosen(exact_products)
    if config.curvature == "gauss_newton" and estimator != "exact":
        raise InputError("the Gauss-Newton quadratic form is computed exactly: use estimator 'exact' (or 'auto')")
    draws = None if estimator == "exact" else config.draws
    grouping = config.grouping
    if draws is not None and grouping == "auto":  # role groups when they fit in the products asked for
        roles = len(_probe_groups(keys, "role"))
        grouping, draws = ("role", draws // roles) if roles <= draws else ("none", draws)
    # jobs: one (operand key, bits) per exact product, or one slot per bit width with every operand in it
    if draws is None:
        jobs = [[(i, bits)] for i, key in enumerate(keys) for bits in bits_of[key[1]]]
    else:
        slots = max(len(wbits), len(abits)) if activations else len(wbits)
        jobs = [
            [(i, bits_of[keys[i][1]][slot % len(bits_of[keys[i][1]])]) for i in group]
            for slot in range(slots)
            for group in _probe_groups(keys, grouping)
            for _ in range(draws)
        ]
    generator = torch.Generator().manual_seed(seed)
    signs = [
        [1.0] if draws is None else (torch.randint(0, 2, (len(job),), generator=generator) * 2 - 1).tolist()
        for job in jobs
    ]

    def error(graph: _HvpGraph, i: int, bits: int) -> Tensor:
        value = graph.values[i]
        return (P.fake_quantize(value, fitted[(keys[i][0], keys[i][1], bits)]) - value).to(value.dtype)

    weights = [layer.module.weight for layer in chosen if not layer.is_matmul]
    # per product and operand: Σ over batches of the batch-weighted vᵢᵀ(Hv)ᵢ; small (products × operands)
    totals = np.zeros((len(jobs), len(keys)))
    bar = tqdm(total=len(jobs) * len(batches), desc="hessian scores", unit="hvp", disable=not progress, file=sys.stderr)
    with _prepared(model, dev, weights), bar:
        for index, batch in enumerate(batches):
            graph = _HvpGraph(model, loss_fn, batch, chosen, keys, activations, f"data batch {index}")
            share = graph.weight / samples
            if draws is None:
                # exact: each product is supported on one operand, so only that operand's gradient is
                # differentiated again (vᵢᵀHᵢᵢvᵢ) — no zero vectors for the others, and a shorter second backward
                by_operand: dict[int, list[int]] = {}
                for j, job in enumerate(jobs):
                    by_operand.setdefault(job[0][0], []).append(j)
                for i, members in by_operand.items():
                    for first in range(0, len(members), batch_draws):
                        chunk = members[first : first + batch_draws]
                        vectors = torch.stack([error(graph, i, jobs[j][0][1]) for j in chunk])
                        product = graph.block_ggn if config.curvature == "gauss_newton" else graph.block_vhv
                        totals[chunk, i] += product(i, vectors).numpy() * share
                        bar.update(len(chunk))
            else:
                # random signs: ``draws`` consecutive jobs share one group of operands; a product covers only its
                # group (its cross terms, zero in mean, stay inside the group)
                for run in range(0, len(jobs), draws):
                    members = [i for i, _ in jobs[run]]
                    per_product = sum(graph.values[i].numel() * graph.values[i].element_size() for i in members)
                    step = max(1, min(batch_draws, VECTOR_BUDGET_BYTES // max(per_product, 1)))
                    for first in range(run, run + draws, step):
                        chunk = list(range(first, min(first + step, run + draws)))
                        vectors = [
                            torch.stack([error(graph, i, jobs[j][k][1]) * signs[j][k] for j in chunk])
                            for k, i in enumerate(members)
                        ]
                        products = graph.group_vhv(members, vectors)
                        for k, i in enumerate(members):
                            totals[chunk, i] += products[:, k].numpy() * share
                        del vectors
                        bar.update(len(chunk))
            del graph  # before the next batch builds its own: one autograd graph alive at a time
    value: dict[tuple[str, str, int], float] = {}
    stderr: dict[tuple[str, str, int], float] = {}
    rows_of: dict[tuple[int, int], list[int]] = {}
    negative = 0  # estimates below zero (indefinite Hessian or noise), counted by their magnitude
    for j, job in enumerate(jobs):
        for item in job:
            rows_of.setdefault(item, []).append(j)
    for i, key in enumerate(keys):
        for bits in bits_of[key[1]]:
            rows = rows_of[(i, bits)]
            samples_ij = totals[rows, i]
            negative += float(samples_ij.mean()) < 0
            value[(key[0], key[1], bits)] = abs(float(samples_ij.mean()))
            spread = float(samples_ij.std(ddof=1)) / math.sqrt(len(rows)) if len(rows) > 1 else 0.0
            stderr[(key[0], key[1], bits)] = spread
    frame = _score_frame(
        [layer.name for layer in chosen],
        pairs,
        lambda name, w: value[(name, "weight", w)],
        lambda name, a: value.get((name, "act", a), 0.0),
    )
    frame["sensitivity_se"] = [
        math.hypot(stderr[(r.layer, "weight", r.wbits)], stderr.get((r.layer, "act", r.abits), 0.0))
        for r in frame.itertuples(index=False)
    ]
    frame.attrs["estimator"] = {
        "form": "quadratic",
        "estimator": estimator,
        "requested": config.estimator,
        "products": len(jobs),
        "exact_products": exact_products,
        "draws": 0 if draws is None else draws,
        "grouping": "" if draws is None else grouping,
        "curvature": config.curvature,
        "negative_estimates": int(negative),
    }
    return frame


def _score_frame(
    layers: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    weight_term: Callable[[str, int], float],
    act_term: Callable[[str, int], float],
) -> pd.DataFrame:
    """The score table: one row per layer and pair with Ω = weight term + activation term, and both terms."""
    rows = []
    for name in layers:
        for w, a in pairs:
            weight, act = weight_term(name, w), act_term(name, a)
            rows.append(
                {
                    "layer": name,
                    "wbits": w,
                    "abits": a,
                    "sensitivity": weight + act,
                    "weight_sensitivity": weight,
                    "act_sensitivity": act,
                }
            )
    return pd.DataFrame(rows)


def _check_bit_pairs(bit_pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    pairs = []
    for pair in bit_pairs:
        try:
            w, a = (int(b) for b in pair)
        except (TypeError, ValueError):
            raise InputError(f"bit pair {pair!r} is not a (wbits, abits) pair of integers") from None
        pairs.append((w, a))
    if not pairs:
        raise InputError("bit_pairs is empty")
    return pairs


def scores_from_traces(traces: Traces, errors: pd.DataFrame, bit_pairs: Iterable[tuple[int, int]]) -> pd.DataFrame:
    """Ω_i(w, a) for every layer in ``traces`` and every pair: columns layer, wbits, abits, sensitivity,
    weight_sensitivity, act_sensitivity (the two terms; the act term is 0 when activations were not traced).
    Negative trace estimates count by their magnitude."""
    pairs = _check_bit_pairs(bit_pairs)
    error = {(r.layer, r.operand, int(r.bits)): float(r.error) for r in errors.itertuples(index=False)}
    # A negative estimate (the loss Hessian w.r.t. activations is indefinite: they are not trained to a minimum;
    # or Hutchinson noise) counts by its magnitude. Counting it as 0 made 2-bit operands free, and the ILP took
    # them: on the digits ViT the plan at the latency of uniform W4A4 fell to 84 % (uniform 98 %); with
    # magnitudes it reached 98.7 %.
    factors = {name: tuple(abs(f) for f in pair) for name, pair in traces.per_element().items()}

    def act_term(name: str, a: int) -> float:
        factor = factors[name][1]
        return 0.0 if math.isnan(factor) else factor * error[(name, "act", a)]

    frame = _score_frame(traces.layers, pairs, lambda name, w: factors[name][0] * error[(name, "weight", w)], act_term)
    se = traces.per_element_se()
    frame["sensitivity_se"] = [
        math.hypot(
            se[r.layer][0] * error[(r.layer, "weight", r.wbits)],
            se[r.layer][1] * error.get((r.layer, "act", r.abits), 0.0),
        )
        for r in frame.itertuples(index=False)
    ]
    return frame


def sensitivity_table(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    bit_pairs: Iterable[tuple[int, int]],
    *,
    method: Literal["hessian", "fisher"] = "hessian",
    form: Literal["quadratic", "trace"] = "quadratic",
    traces: Traces | None = None,
    calibration: Batch | Iterable[Batch] | None = None,
    act_kinds: Mapping[str, str] | None = None,
    act_method: str = "minmax",
    config: ScorerConfig | None = None,
    **options: Any,
) -> pd.DataFrame:
    """The ILP's sensitivity input: one row per layer and (wbits, abits) pair with columns layer, wbits,
    abits, sensitivity, sensitivity_se (its standard error; 0 where exact), weight_sensitivity,
    act_sensitivity. ``frame.attrs["estimator"]`` says which estimator ran.

    ``config``: a typed scorer config (``HessianQuadraticConfig``, ``HessianTraceConfig``, ``FisherConfig``)
    dispatched through the registry (``allocator.sensitivity.configs.score``); the preferred form. Without it,
    the older keywords build one: ``method="hessian"``, ``form="quadratic"``: ``hessian_scores`` (ΔᵀHΔ with the
    actual errors; ``options`` ``draws=None``: exact, ``draws=k``: k random-sign products per bit width);
    ``form="trace"``: HAWQ-V2's Tr(H)/n·‖Δ‖² from ``hessian_traces``; ``method="fisher"``: ``fisher_traces``
    traces times ‖Δ‖². ``traces``: reuse traces computed before (trace form). ``calibration``: data whose
    activations set the quantizers (default ``data``); ``act_method``: how they are fitted."""
    pairs = _check_bit_pairs(bit_pairs)
    if traces is not None:
        device = options.get("device") if config is None else config.device
        batch_size = options.get("batch_size") if config is None else config.batch_size
        errors = quantization_errors(
            model,
            data if calibration is None else calibration,
            {w for w, _ in pairs},
            {a for _, a in pairs},
            layers=traces.layers,
            act_kinds=act_kinds,
            act_method=act_method,
            device=device,
            batch_size=batch_size,
        )
        frame = scores_from_traces(traces, errors, pairs)
        frame.attrs["estimator"] = {"form": "trace", "estimator": f"{traces.method} traces (given)"}
        return frame
    if config is None:
        config = make_config(method, form, act_kinds=act_kinds, act_method=act_method, **options)
    return score(model, loss_fn, data, pairs, config, calibration=calibration)


def make_config(
    method: Literal["hessian", "fisher"] = "hessian", form: Literal["quadratic", "trace"] = "quadratic", **options: Any
) -> ScorerConfig:
    """The typed config for the older (method, form, **options) keywords: quadratic form ``draws`` None → exact,
    k → random signs, ``"auto"`` → chosen by size; trace form ``max_draws``, ``tol`` (ignored: the stopping rule
    is ``rel_se``), ``rel_se``; Fisher ``normalize``; all: the ``ScorerConfig`` fields. Unknown names exit 2."""
    if method not in ("hessian", "fisher"):
        raise InputError(f"unknown sensitivity method {method!r}; choose hessian or fisher")
    if form not in ("quadratic", "trace"):
        raise InputError(f"unknown Hessian score form {form!r}; choose quadratic or trace")
    options = dict(options)
    if options.get("device") is not None:
        options["device"] = str(options["device"])
    if options.get("layers") is not None:
        options["layers"] = tuple(options["layers"])
    kind: type[ScorerConfig]
    if method == "fisher":
        kind = FisherConfig
    elif form == "trace":
        kind = HessianTraceConfig
        options.pop("tol", None)
    else:
        kind = HessianQuadraticConfig
        if "draws" in options:
            draws = options.pop("draws")
            if draws is None:
                options["estimator"] = "exact"
            elif draws == "auto":
                options.setdefault("estimator", "auto")
            else:
                if int(draws) < 1:
                    raise InputError(f"draws must be at least 1 (or None for the exact form), got {draws}")
                options["estimator"], options["draws"] = "random_sign", int(draws)
    known = set(config_fields(kind))
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"{kind.__name__} takes no option(s) {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
        )
    return kind(**options)


@register_scorer(HessianTraceConfig)
def _trace_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    config: HessianTraceConfig,
    calibration: Batch | Iterable[Batch] | None,
) -> pd.DataFrame:
    traces = hessian_traces(
        model,
        loss_fn,
        data,
        max_draws=config.max_draws,
        min_draws=config.min_draws,
        rel_se=config.rel_se,
        probe=config.probe,
        rank=config.rank,
        max_rank=config.max_rank,
        se_floor=config.se_floor,
        batch_draws=config.batch_draws,
        seed=config.seed,
        **config.common(),
    )
    return _scores_for(model, data, pairs, traces, config, calibration)


@register_scorer(FisherConfig)
def _fisher_scores(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    config: FisherConfig,
    calibration: Batch | Iterable[Batch] | None,
) -> pd.DataFrame:
    traces = fisher_traces(model, loss_fn, data, normalize=config.normalize, **config.common())
    return _scores_for(model, data, pairs, traces, config, calibration)


def _scores_for(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    pairs: Sequence[tuple[int, int]],
    traces: Traces,
    config: ScorerConfig,
    calibration: Batch | Iterable[Batch] | None,
    estimator: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Trace-form scores for traces just computed, with their standard errors and the estimator named
    (``estimator``: ``frame.attrs["estimator"]`` when the traces' own method and draws do not say it, as for
    LampQ's type-aware traces)."""
    errors = quantization_errors(
        model,
        data if calibration is None else calibration,
        {w for w, _ in pairs},
        {a for _, a in pairs},
        layers=traces.layers,
        act_kinds=config.act_kinds,
        act_method=config.act_method,
        device=config.device,
        batch_size=config.batch_size,
    )
    frame = scores_from_traces(traces, errors, pairs)
    frame.attrs["estimator"] = estimator or {
        "form": "trace",
        "estimator": f"{traces.method} traces",
        "draws": traces.draws,
    }
    return frame
