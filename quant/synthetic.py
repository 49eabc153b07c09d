"""Data-free calibration: images synthesised from the model itself (PSAQ-ViT, Li et al., ECCV 2022,
arXiv 2203.02250; reference code github.com/zkkli/PSAQ-ViT ``generate_data.py``).

Start from Gaussian noise and optimise the pixels with Adam so that, in every transformer block, the patch
outputs of A·V (heads averaged, class/prefix tokens dropped) are diverse: the loss rewards a high differential
entropy of the distribution of their pairwise cosine similarities (a Gaussian kernel density estimate, bandwidth
0.01, integrated on 10 points by the trapezoid rule). Cross-entropy towards random labels and a total-variation
term held near a random target v keep the images "natural" for the model:

    loss = −Σ_blocks H(KDE(cos-sim of patches)) + CE(model(x), random labels) + 0.05·|TV(x) − v|

The paper's setting (``SynthesisConfig()`` with ``steps=500``): 32 images, Adam lr 0.20 (0.25 for Swin), betas
(0.5, 0.9), 2 stages × 500 steps with random roll of up to 15 then 30 pixels and random horizontal flips, cosine
learning rate with 100 warm-up steps per stage, v ~ U(2500, 3000) (for 32 images at 3×224×224), pixels clipped
to the normalised [0, 1] range after each step.

Defaults here (``default_steps``): 500 steps per stage (the paper's) for models under 5 M parameters, which take
seconds to minutes on a CPU; 50 per stage for bigger models on a CPU (DeiT-S: one step on 32 images at 224 is
several seconds on 2 cores, so the paper's 1,000 steps would take over an hour), 500 on a GPU. Warm-up is 1/5
of a stage (100 of 500, as in the paper). The roll limits scale with the image side (15 and 30 px at 224). v
scales with the square root of the number of pixel differences, since TV is an L2 norm over them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from quant.errors import InputError

__all__ = ["SynthesisConfig", "default_steps", "gaussian_images", "patch_similarity_entropy", "synthesise_images"]

_REFERENCE_PIXELS = 32 * 3 * 224 * 224  # the batch PSAQ-ViT's v ~ U(2500, 3000) was set for
_SMALL_MODEL_PARAMETERS = 5_000_000


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of the PSAQ-ViT synthesis (see the module docstring). ``steps``: Adam steps per stage;
    ``lr``: None for the paper's (0.25 for Swin, else 0.20)."""

    images: int = 32
    steps: int = 500
    stages: int = 2
    lr: float | None = None
    betas: tuple[float, float] = (0.5, 0.9)
    warmup_fraction: float = 0.2
    tv_weight: float = 0.05
    bandwidth: float = 0.01
    kde_points: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1:
            raise InputError(f"synthetic images must be at least 1, got {self.images}")
        if self.steps < 1 or self.stages < 1:
            raise InputError(f"--synthetic-steps must be at least 1, got {self.steps} ({self.stages} stages)")


def default_steps(model: nn.Module, device: str | torch.device = "cpu") -> int:
    """Steps per stage: the paper's 500 on a GPU or for a small model, 50 for a big model on a CPU."""
    if torch.device(device).type != "cpu":
        return 500
    parameters = sum(p.numel() for p in model.parameters())
    return 500 if parameters < _SMALL_MODEL_PARAMETERS else 50


def gaussian_images(count: int, input_size: tuple[int, int, int], seed: int = 0) -> Tensor:
    """The control: standard normal images (N, C, H, W) — in the normalised input space, as PSAQ-ViT starts."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(count, *input_size, generator=gen)


def _kde_entropy(sims: Tensor, bandwidth: float, points: int) -> Tensor:
    """Mean over rows of the differential entropy of a Gaussian KDE of each row's values (rows, M)."""
    lo, hi = float(sims.min().detach()), float(sims.max().detach())
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    grid = torch.linspace(lo, hi, points, device=sims.device, dtype=sims.dtype).expand(sims.shape[0], points)
    diffs = (grid.unsqueeze(-1) - sims.unsqueeze(-2)) / bandwidth  # (rows, points, M)
    pdf = torch.exp(-0.5 * diffs**2).mean(dim=-1) / (bandwidth * math.sqrt(2 * math.pi))
    pdf = pdf + 1e-4
    return torch.trapezoid(-pdf * torch.log(pdf), grid, dim=-1).mean()


def patch_similarity_entropy(av: Tensor, heads: int, prefix_tokens: int, bandwidth: float, points: int) -> Tensor:
    """Entropy of one block's patch-similarity distribution from its attention output ``av`` (rows, N, H·d) —
    the input of the attention's output projection, i.e. A·V with the heads concatenated."""
    rows, tokens, width = av.shape
    patches = av.reshape(rows, tokens, heads, width // heads).mean(dim=2)[:, prefix_tokens:, :]
    sims = F.cosine_similarity(patches.unsqueeze(1), patches.unsqueeze(2), dim=3)
    return _kde_entropy(sims.reshape(rows, -1), bandwidth, points)


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm attention modules (ViT/DeiT ``Attention``, Swin ``WindowAttention``): a ``num_heads`` and a ``proj``."""
    return [m for m in model.modules() if hasattr(m, "num_heads") and isinstance(getattr(m, "proj", None), nn.Linear)]


def _total_variation(x: Tensor) -> Tensor:
    """PSAQ-ViT's image prior: L2 norms of the horizontal, vertical and both diagonal neighbour differences."""
    return (
        torch.norm(x[:, :, :, :-1] - x[:, :, :, 1:])
        + torch.norm(x[:, :, :-1, :] - x[:, :, 1:, :])
        + torch.norm(x[:, :, 1:, :-1] - x[:, :, :-1, 1:])
        + torch.norm(x[:, :, :-1, :-1] - x[:, :, 1:, 1:])
    )


def synthesise_images(
    model: nn.Module,
    input_size: tuple[int, int, int],
    num_classes: int,
    config: SynthesisConfig | None = None,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Synthesise calibration images for ``model`` (normalised input space, (N, C, H, W) on the CPU) and the
    random labels they were optimised towards (N,). ``mean``/``std``: the model's input normalisation, used to
    clip pixels to [0, 1] after each step (None: no clipping). The model is left unchanged (eval mode, no grads).
    """
    config = config or SynthesisConfig()
    attentions = _attention_modules(model)
    if not attentions:
        raise InputError(
            f"--data synthetic: {type(model).__name__} has no attention blocks (timm ViT/DeiT/Swin); "
            "the patch-similarity objective needs them"
        )
    if num_classes < 1:
        raise InputError("--data synthetic: the model has no classifier to aim random labels at")
    rng = random.Random(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = torch.device(device)
    is_swin = any(type(m).__name__ == "WindowAttention" for m in attentions)
    lr = config.lr if config.lr is not None else (0.25 if is_swin else 0.20)
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    channels, height, width = input_size

    captured: list[tuple[Tensor, int]] = []
    hooks = [
        attn.proj.register_forward_pre_hook(lambda _m, args, heads=attn.num_heads: captured.append((args[0], heads)))
        for attn in attentions
    ]
    requires = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        images = torch.randn(config.images, *input_size, generator=gen).to(device).requires_grad_(True)
        labels = torch.randint(0, num_classes, (config.images,), generator=gen).to(device)
        differences = 4 * config.images * channels * height * width  # roughly, the TV norm's element count
        tv_target = rng.uniform(2500.0, 3000.0) * math.sqrt(differences / (4 * _REFERENCE_PIXELS))
        lo = hi = None
        if mean is not None and std is not None:
            m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
            s = torch.tensor(std, device=device).view(1, -1, 1, 1)
            lo, hi = -m / s, (1 - m) / s
        optimizer = torch.optim.Adam([images], lr=lr, betas=config.betas, eps=1e-8)
        warmup = max(1, round(config.steps * config.warmup_fraction))
        total = config.stages * config.steps
        bar = _bar(total, progress)
        step = 0
        for stage in range(config.stages):
            limit = max(1, round((15 if stage == 0 else 30) * height / 224))
            for it in range(config.steps):
                rate = (
                    lr * (it + 1) / warmup
                    if it < warmup
                    else (0.5 * (1 + math.cos(math.pi * (it - warmup) / max(config.steps - warmup, 1))) * lr)
                )
                for group in optimizer.param_groups:
                    group["lr"] = rate
                offset = rng.randint(-limit, limit)
                jittered = torch.roll(images, shifts=(offset, offset), dims=(2, 3))
                if rng.random() > 0.5:
                    jittered = torch.flip(jittered, dims=(3,))
                captured.clear()
                logits = model(jittered)
                entropy = sum(
                    patch_similarity_entropy(
                        av, heads, prefix if av.shape[1] > 1 else 0, config.bandwidth, config.kde_points
                    )
                    for av, heads in captured
                )
                loss = (
                    -entropy
                    + F.cross_entropy(logits, labels)
                    + config.tv_weight * (_total_variation(jittered) - tv_target).abs()
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if lo is not None:
                    with torch.no_grad():
                        images.copy_(torch.maximum(torch.minimum(images, hi), lo))
                step += 1
                if on_step is not None:
                    on_step(step, float(loss))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        if bar is not None:
            bar.close()
    finally:
        for hook in hooks:
            hook.remove()
        captured.clear()
        for p, flag in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    return images.detach().cpu(), labels.cpu()


def _bar(total: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="synthesising calibration images", unit="step", leave=False)
