"""quant.synthetic: PSAQ-ViT images from the model itself (shapes, clipping, seeds, the objective's direction)."""

from __future__ import annotations

import pytest
import torch

from quant.errors import InputError
from quant.models import create_model
from quant.synthetic import (
    SynthesisConfig,
    default_steps,
    gaussian_images,
    patch_similarity_entropy,
    synthesise_images,
)


def test_entropy_is_higher_for_diverse_patches_than_for_identical_ones() -> None:
    torch.manual_seed(0)
    same = torch.randn(2, 1, 8).expand(2, 17, 8).contiguous()  # every token equal: all similarities 1
    diverse = torch.randn(2, 17, 8)
    low = patch_similarity_entropy(same, heads=2, prefix_tokens=1, bandwidth=0.01, points=10)
    high = patch_similarity_entropy(diverse, heads=2, prefix_tokens=1, bandwidth=0.01, points=10)
    assert float(high) > float(low) + 0.1


def test_synthesis_shapes_clipping_seed_and_model_untouched() -> None:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = SynthesisConfig(images=4, steps=3, seed=1)
    x, y = synthesise_images(model, (1, 16, 16), 10, config, mean=(0.5,), std=(0.25,))
    assert x.shape == (4, 1, 16, 16) and y.shape == (4,) and int(y.max()) < 10
    assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6  # [0, 1] pixels: (p - 0.5) / 0.25
    again, _ = synthesise_images(model, (1, 16, 16), 10, config, mean=(0.5,), std=(0.25,))
    assert torch.equal(x, again)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_the_objective_goes_down() -> None:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    losses: list[float] = []
    synthesise_images(
        model,
        (1, 16, 16),
        10,
        SynthesisConfig(images=8, steps=40, stages=1, seed=0),
        on_step=lambda _s, v: losses.append(v),
    )
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_defaults_and_refusals() -> None:
    assert default_steps(create_model("mixbit_vit_test")) == 500
    assert default_steps(create_model("deit_tiny_patch16_224")) == 50
    assert default_steps(create_model("deit_tiny_patch16_224"), "cuda") == 500
    assert gaussian_images(3, (3, 8, 8), seed=2).shape == (3, 3, 8, 8)
    with pytest.raises(InputError, match="--synthetic-steps must be at least 1"):
        SynthesisConfig(steps=0)
    with pytest.raises(InputError, match="no attention blocks"):
        synthesise_images(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), (1, 2, 2), 2)
