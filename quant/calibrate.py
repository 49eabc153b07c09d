"""``calibrate_(model, data, method=...)``: fit every activation quantizer of a quantized model.

All quantizers observe one pass of the FP32 activations over the calibration data (standard PTQ), then
each is fitted with ``method``. A quantizer asked for kind ``"auto"`` fits every kind in
``primitives.KINDS`` to its own observed distribution and keeps the one with the least squared error
(uniform unless a non-uniform kind's error is ``AUTO_MARGIN`` lower: it costs decode hardware);
the report lists, per quantizer, the kind kept and every candidate's error.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from quant import primitives as P
from quant.errors import InputError
from quant.modules import Quantizer

__all__ = ["AUTO_MARGIN", "CalibrationReport", "QuantizerChoice", "calibrate_", "check_images"]

AUTO_MARGIN = 0.01  # "auto" keeps a non-uniform kind only when its error is at least 1 % below uniform's


@dataclass(frozen=True)
class QuantizerChoice:
    """One activation quantizer after calibration: its kind and the error of every kind tried.

    ``errors``: kind -> squared error ‖Q(x) − x‖² on the observed calibration activations (sum).
    """

    name: str
    bits: int
    requested_kind: str
    kind: str
    errors: dict[str, float] = field(default_factory=dict)
    elements: int = 0


@dataclass(frozen=True)
class CalibrationReport:
    """What ``calibrate_`` did: the method and one ``QuantizerChoice`` per activation quantizer."""

    method: str
    quantizers: tuple[QuantizerChoice, ...]

    @property
    def choices(self) -> dict[str, str]:
        """Quantizer name -> kind kept."""
        return {q.name: q.kind for q in self.quantizers}

    def to_frame(self) -> Any:
        import pandas as pd

        rows = [
            {
                "quantizer": q.name,
                "bits": q.bits,
                "requested_kind": q.requested_kind,
                "kind": q.kind,
                "error": q.errors.get(q.kind, math.nan),
                "uniform_error": q.errors.get("uniform", math.nan),
                "elements": q.elements,
            }
            for q in self.quantizers
        ]
        return pd.DataFrame(rows)


def _expected_input(model: nn.Module) -> tuple[int | None, tuple[int, int] | None]:
    """(channels, (H, W) when the model insists on one size) from the patch embedding."""
    patch = getattr(model, "patch_embed", None)
    proj = getattr(patch, "proj", None)
    channels = proj.in_channels if isinstance(proj, nn.Conv2d) else None
    size = getattr(patch, "img_size", None)
    strict = getattr(patch, "strict_img_size", True) and not getattr(patch, "dynamic_img_size", False)
    if size is None or not strict:
        return channels, None
    return channels, tuple(size) if not isinstance(size, int) else (size, size)


def check_images(model: nn.Module, x: Tensor, where: str = "calibration data") -> Tensor:
    """Raise ``InputError`` unless ``x`` is a finite float (N, C, H, W) batch the model accepts."""
    if not isinstance(x, Tensor):
        raise InputError(f"{where}: expected a tensor of images, got {type(x).__name__}")
    if x.numel() == 0 or x.shape[0] == 0:
        raise InputError(f"{where}: no images (shape {tuple(x.shape)})")
    channels, size = _expected_input(model)
    if x.dim() != 4:
        raise InputError(f"{where}: expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{where}: images have {x.shape[1]} channels, the model expects {channels}")
    if size is not None and tuple(x.shape[2:]) != size:
        raise InputError(f"{where}: images are {x.shape[2]}x{x.shape[3]}, the model expects {size[0]}x{size[1]}")
    if not x.is_floating_point():
        raise InputError(f"{where}: images must be floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise InputError(f"{where}: contains NaN or infinite values")
    return x


def _batches(data: Tensor | Iterable[Any], batch_size: int) -> list[Tensor]:
    if isinstance(data, Tensor):
        return list(data.split(batch_size)) if data.dim() > 0 and data.shape[0] > 0 else [data]
    batches = []
    for item in data:
        batches.append(item[0] if isinstance(item, tuple | list) else item)
    return batches


def _fit_one(q: Quantizer, x: Tensor, method: str, kinds: tuple[str, ...]) -> dict[str, float]:
    bits = int(q.bits)
    candidates = kinds if q.requested_kind == "auto" else (q.requested_kind,)
    errors: dict[str, float] = {}
    best: P.QParams | None = None
    for kind in candidates:
        try:
            p = P.fit(x, bits, kind, method=method)
        except InputError:
            continue  # a kind that cannot represent this distribution at these bits (e.g. signed v2sf at 2 bits)
        errors[kind] = P.squared_error(x, p)
        if best is None or errors[kind] < errors[best.kind]:
            best = p
    if "uniform" in errors and best is not None and errors[best.kind] >= errors["uniform"] * (1 - AUTO_MARGIN):
        best = P.fit(x, bits, "uniform", method=method)  # non-uniform must win clearly to be worth its hardware
    if best is None:
        raise InputError(f"no quantizer kind of {candidates} fits this distribution at {bits} bits")
    q.set_params(best)
    return errors


def calibrate_(
    model: nn.Module,
    data: Tensor | Iterable[Any],
    method: str = "minmax",
    *,
    batch_size: int = 64,
    kinds: tuple[str, ...] = P.KINDS,
    progress: bool = False,
) -> CalibrationReport:
    """Fit every activation quantizer of quantized ``model`` on ``data`` (images (N, C, H, W), or an
    iterable of such batches or of (images, labels)); returns the per-quantizer report.

    ``method``: ``minmax``, ``percentile`` or ``mse`` (``primitives.METHODS``). ``kinds``: the kinds an
    ``"auto"`` quantizer chooses from. Batches run on the model's device (moved there one at a time).
    ``progress``: a tqdm bar (with an ETA) on stderr over the forward batches and the quantizer fits.
    """
    from quant.quantize import activation_quantizers

    if method not in P.METHODS:
        raise InputError(f"unknown calibration method {method!r}; choose from {', '.join(P.METHODS)}")
    quantizers = activation_quantizers(model)
    if not quantizers:
        raise InputError("model has no activation quantizers; run quant.quantize_(model, config) first")
    batches = [check_images(model, b) for b in _batches(data, batch_size)]
    if not batches:
        raise InputError("calibration data: no images")
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    bar = tqdm(
        total=len(batches) + len(quantizers), desc="calibrating", unit="step", disable=not progress, file=sys.stderr
    )
    for q in quantizers.values():
        q.clear_observed()
        q.observing = True
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch.to(device))
                bar.update()
    finally:
        for q in quantizers.values():
            q.observing = False
    choices = []
    for name, q in quantizers.items():
        bar.update()
        x = q.observed()
        q.clear_observed()
        if x.numel() == 0:  # not on the forward path (e.g. an unused head)
            choices.append(QuantizerChoice(name, int(q.bits), q.requested_kind, q.kind))
            continue
        errors = _fit_one(q, x, method, kinds)
        choices.append(QuantizerChoice(name, int(q.bits), q.requested_kind, q.kind, errors, x.numel()))
    bar.close()
    model.train(was_training)
    return CalibrationReport(method, tuple(choices))
