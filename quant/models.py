"""Model construction: any timm model by name, plus mixbit's small testbed ViTs.

The testbed ViTs are timm ``VisionTransformer``s sized for scikit-learn's digits (8×8 images upsampled to
16×16, one channel, 10 classes), so tests build them in milliseconds and accuracy can be measured here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from quant._torch import import_timm
from quant.errors import InputError

__all__ = ["CHECKPOINT_DIR", "TESTBED_MODELS", "create_model", "is_testbed"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"  # shipped testbed weights (package data)

_DIGITS = {"img_size": 16, "patch_size": 4, "in_chans": 1, "num_classes": 10}

# name -> timm VisionTransformer keyword arguments
TESTBED_MODELS: dict[str, dict[str, Any]] = {
    "mixbit_vit_test": {**_DIGITS, "embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
    "mixbit_vit_digits": {**_DIGITS, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
    "mixbit_vit_deep_test": {**_DIGITS, "embed_dim": 48, "depth": 12, "num_heads": 3, "mlp_ratio": 2.0},
}


def is_testbed(name: str) -> bool:
    return name in TESTBED_MODELS


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build ``name`` (a timm model name or a testbed name) in eval mode, with unfused attention.

    ``pretrained=True``: a testbed model loads ``quant/checkpoints/<name>.pt`` (written by ``mixbit train
    --out``); a timm model gets timm's pretrained weights (downloaded by timm). timm's fused attention
    hides q·kᵀ from hooks and cannot double-backward on CPU, so it is switched off.
    """
    timm = import_timm()
    if name in TESTBED_MODELS:
        from timm.models.vision_transformer import VisionTransformer

        checkpoint = None
        if pretrained:
            path = CHECKPOINT_DIR / f"{name}.pt"
            if not path.is_file():
                raise InputError(f"no shipped checkpoint for testbed model {name!r} (expected {path})")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            kwargs = {**checkpoint.get("model_kwargs", {}), **kwargs}
        model: nn.Module = VisionTransformer(**{**TESTBED_MODELS[name], **kwargs})
        if checkpoint is not None:
            model.load_state_dict(checkpoint["state_dict"])
    else:
        if not timm.is_model(name):
            raise InputError(
                f"unknown model {name!r}: not a timm model name nor one of the testbed models "
                f"({', '.join(sorted(TESTBED_MODELS))})"
            )
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model.eval()


def default_input(model: nn.Module, batch: int = 1) -> torch.Tensor:
    """A random input of the shape the model expects (N, C, H, W)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    chans = getattr(getattr(model, "patch_embed", None), "proj", None)
    in_chans = chans.in_channels if isinstance(chans, nn.Conv2d) else 3
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or cfg.get("input_size", (3, 224, 224))[1:]
    if isinstance(size, int):
        size = (size, size)
    return torch.randn(batch, in_chans, *size[-2:])
