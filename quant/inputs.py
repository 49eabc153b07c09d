"""A command's model and data, opened and checked against each other before any expensive stage.

``model_and_data`` is the one path from command-line choices (model name, ``--checkpoint``, ``--data``,
``--calib-data``, ``--eval-data``, ``--eval-images``, preprocessing overrides) to a float model and its
:class:`~quant.data.ModelData`. Order matters to users: the checkpoint is read and matched to the architecture
first, then the data's layout, classes and channels are checked (listing files and opening one image per
class), and only then is anything expensive done (``--data synthetic`` synthesises images last).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quant.checkpoint import Weights, fit_head_, load_model
from quant.data import ModelData, check_img_size, model_data_config, open_data
from quant.errors import InputError

__all__ = ["DataOptions", "model_and_data"]


@dataclass(frozen=True)
class DataOptions:
    """What the user asked for. ``data``: ``digits``, ``synthetic``, a folder, or None (then ``calib_data`` is
    needed); ``img_size``: build the model for that image side (pixels) instead of its default or recorded one;
    ``interpolation``/``crop_pct``/``mean``/``std``: override the model's data config; ``synthetic_steps``:
    Adam steps per stage for ``--data synthetic`` (None: ``quant.synthetic.default_steps``);
    ``synthetic_images``: how many images to synthesise."""

    data: str | None = "digits"
    calib_data: str | None = None
    eval_data: str | None = None
    eval_images: int | None = None
    img_size: int | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    synthetic_steps: int | None = None
    synthetic_images: int = 32
    seed: int = 0
    batch_size: int = 64


def _patch_size(model_name: str) -> int:
    """The patch side in pixels (16 for ``*_patch16_*`` timm names, the testbed's own), for --img-size checks."""
    import re

    from quant.models import TESTBED_MODELS

    if model_name in TESTBED_MODELS:
        return int(TESTBED_MODELS[model_name]["patch_size"])
    match = re.search(r"patch(\d+)", model_name)
    return int(match[1]) if match else 1


def model_and_data(
    model_name: str,
    options: DataOptions,
    *,
    checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, Weights, ModelData]:
    """The float model (eval mode), where its weights came from, and its data — every check done.

    Random weights get a classifier as wide as the data has classes; trained weights must have been trained on
    the data's classes (names when the checkpoint recorded them, else the head's width).
    """
    say = log or (lambda _message: None)
    if options.eval_images is not None and options.eval_images < 1:
        raise InputError(f"--eval-images must be at least 1, got {options.eval_images}")
    overrides: dict[str, Any] = {}
    if options.img_size is not None:
        overrides["img_size"] = check_img_size(options.img_size, _patch_size(model_name))
    model, weights = load_model(model_name, checkpoint, seed=options.seed, **overrides)
    config = model_data_config(
        model,
        recorded=weights.data_config,
        interpolation=options.interpolation,
        crop_pct=options.crop_pct,
        mean=options.mean,
        std=options.std,
    )
    label = weights.label(model_name)

    def synthesise() -> tuple[torch.Tensor, torch.Tensor]:
        from quant.synthetic import SynthesisConfig, default_steps, synthesise_images

        steps = options.synthetic_steps if options.synthetic_steps is not None else default_steps(model, device)
        syn = SynthesisConfig(images=options.synthetic_images, steps=steps, seed=options.seed)
        say(f"synthesising {syn.images} calibration images ({syn.stages} stages x {syn.steps} steps, PSAQ-ViT)")
        classes = getattr(model, "num_classes", 0) or 0
        return synthesise_images(
            model.to(device),
            config.input_size,
            int(classes),
            syn,
            mean=config.mean,
            std=config.std,
            device=device,
            progress=progress,
        )

    data = open_data(
        options.data,
        config,
        calib_data=options.calib_data,
        eval_data=options.eval_data,
        eval_images=options.eval_images,
        classes=weights.classes,
        num_outputs=weights.num_outputs
        if options.data != "synthetic"
        else int(getattr(model, "num_classes", 0) or 0) or None,
        weights=label,
        model_label=model_name,
        seed=options.seed,
        synthetic=synthesise,
        batch_size=options.batch_size,
    )
    if options.data != "synthetic":
        fit_head_(model, weights, len(data.classes), seed=options.seed)
    return model.eval(), weights, data
