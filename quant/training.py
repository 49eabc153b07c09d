"""Training a ViT on the user's images (``mixbit train``): the same data path as every other command.

Images are read as the model will see them later (``quant.data``: the model's own data config, ImageNet or flat
layout), streamed batch by batch for folders; progress (tqdm, with an ETA) goes to stderr. The checkpoint is
written atomically by ``quant.checkpoint.save_checkpoint`` and records what is needed to load and feed the
model again: model name, keyword arguments (image size, classes, channels), class names and the data config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from quant.data import ModelData, evaluate_data
from quant.errors import InputError

__all__ = ["TrainOptions", "fit_", "model_kwargs_for", "train_on_data"]


@dataclass(frozen=True)
class TrainOptions:
    """AdamW with a cosine schedule after one warm-up epoch; ``augment``: random 1-pixel shifts."""

    epochs: int = 100
    seed: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    augment: bool = True
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")


def _shift(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random shifts of up to one pixel (padded with the batch minimum), one per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.min()))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def _batches(data: ModelData, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled training batches: indexed in memory for tensors, streamed for image folders."""
    calib = data.calib_dataset()
    if isinstance(calib, TensorDataset):
        x, y = calib.tensors
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            yield x[idx], y[idx]
        return
    from torch.utils.data import DataLoader

    order = torch.randperm(data.num_calib, generator=gen).tolist()
    yield from DataLoader(calib, batch_size=batch_size, sampler=order, num_workers=data.workers)


def fit_(model: nn.Module, data: ModelData, options: TrainOptions, *, progress: bool = False) -> nn.Module:
    """Train ``model`` in place on ``data``'s calibration (training) side; returns it in eval mode."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(data.num_calib / options.batch_size)
    total, warmup = options.epochs * steps_per_epoch, steps_per_epoch
    decay = max(total - warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * min(s - warmup, decay) / decay)),
    )
    gen = torch.Generator().manual_seed(options.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="training", unit="step", leave=False)
    try:
        for epoch in range(options.epochs):
            for xb, yb in _batches(data, options.batch_size, gen):
                if options.augment:
                    xb = _shift(xb, gen)
                loss = F.cross_entropy(model(xb), yb, label_smoothing=options.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=f"{epoch + 1}/{options.epochs}", loss=f"{float(loss):.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return model.eval()


def model_kwargs_for(model_name: str, classes: int, channels: int, img_size: int | None) -> dict[str, Any]:
    """Keyword arguments that build ``model_name`` for this data; recorded in the checkpoint to rebuild it."""
    kwargs: dict[str, Any] = {"num_classes": classes, "in_chans": channels}
    if img_size is not None:
        kwargs["img_size"] = img_size
    return kwargs


def train_on_data(
    model_name: str,
    model: nn.Module,
    data: ModelData,
    options: TrainOptions,
    *,
    model_kwargs: dict[str, Any],
    out: str | Path | None = None,
    record_data_config: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` (built by the caller with ``model_kwargs``), evaluate it, optionally save a checkpoint;
    returns the facts ``mixbit train`` reports."""
    from quant.checkpoint import save_checkpoint

    start = time.perf_counter()
    fit_(model, data, options, progress=progress)
    seconds = time.perf_counter() - start
    accuracy, loss = evaluate_data(model, data)
    result: dict[str, Any] = {
        "model": model_name,
        "data": data.name,
        "epochs": options.epochs,
        "seed": options.seed,
        "train_images": data.num_calib,
        "test_images": data.num_eval,
        "classes": len(data.classes),
        "model_kwargs": model_kwargs,
        "accuracy": accuracy,
        "test_loss": loss,
        "train_seconds": round(seconds, 2),
        "checkpoint": None,
    }
    if out is not None:
        path = save_checkpoint(
            out,
            model_name,
            model,
            model_kwargs=model_kwargs,
            classes=data.classes,
            data_config=data.config.to_json() if record_data_config else None,
            data=data.name,
            test_accuracy=accuracy,
            epochs=options.epochs,
            seed=options.seed,
        )
        result["checkpoint"] = str(path)
    return result
