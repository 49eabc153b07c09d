"""PMQ's metric in HTQ's form (allocator/sensitivity/pmq.py): mask gradients against plain autograd, score shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from allocator.sensitivity import PMQConfig, mask_scores, pmq_scores, score
from allocator.sensitivity.scores import quantizable_layers, quantization_errors
from quant import QuantConfig, quantize_
from quant.models import create_model
from sim.errors import InputError

LOSS = nn.CrossEntropyLoss()
PAIRS = [(2, 8), (4, 4), (8, 2), (8, 8)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images[:48], dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target[:48])


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A depth-1, dim-8 ViT with quant's attention matmul modules (both operands tapped), W8A8 uncalibrated
    (activation quantizers pass values through)."""
    torch.manual_seed(0)
    net = create_model("mixbit_vit_test", embed_dim=8, depth=1, num_heads=2, img_size=8)
    return quantize_(net, QuantConfig(wbits=8, abits=8)).eval()


def test_weight_mask_scores_match_plain_autograd(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = data
    masks = mask_scores(model, LOSS, [(x[:20], y[:20]), (x[20:], y[20:])])
    # oracle: one graph over all samples, gradient of the mean loss, |W ⊙ ∂L/∂W| averaged
    model.zero_grad(set_to_none=True)
    LOSS(model(x), y).backward()
    modules = dict(model.named_modules())
    for name, value in zip(masks.layers, masks.weight, strict=True):
        if name.endswith(("matmul_qk", "matmul_av")):
            continue
        weight = modules[name].weight
        expected = float((weight.detach() * weight.grad).abs().mean())
        assert value == pytest.approx(expected, rel=1e-5)
    model.zero_grad(set_to_none=True)


def test_activation_mask_scores_match_per_sample_masks(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = data
    layer = "blocks.0.mlp.fc1"
    masks = mask_scores(model, LOSS, (x[:6], y[:6]), layers=[layer])
    # oracle: each sample alone, a ones mask multiplying fc1's input, mean |∂ℓ/∂mask|
    module = dict(model.named_modules())[layer]
    values = []
    for i in range(6):
        mask: list[torch.Tensor] = []

        def hook(
            _m: nn.Module, args: tuple[torch.Tensor, ...], mask: list[torch.Tensor] = mask
        ) -> tuple[torch.Tensor, ...]:
            m = torch.ones_like(args[0], requires_grad=True)
            mask.append(m)
            return (args[0] * m,)

        handle = module.register_forward_pre_hook(hook)
        try:
            loss = LOSS(model(x[i : i + 1]), y[i : i + 1])
            (grad,) = torch.autograd.grad(loss, mask)
        finally:
            handle.remove()
        values.append(grad.abs().flatten())
    assert masks.act[0] == pytest.approx(float(torch.cat(values).mean()), rel=1e-5)


def test_scores_are_mask_times_frobenius_error(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = data
    frame = pmq_scores(model, LOSS, (x, y), PAIRS)
    layers = quantizable_layers(model)
    assert len(frame) == len(layers) * len(PAIRS)
    assert np.isfinite(frame["sensitivity"]).all() and (frame["sensitivity"] >= 0).all()
    assert (frame["sensitivity_se"] == 0).all()
    masks = mask_scores(model, LOSS, (x, y))
    errors = quantization_errors(model, (x, y), [2, 4, 8], [2, 4, 8])
    error = {(r.layer, r.operand, r.bits): r.error for r in errors.itertuples()}
    weight = dict(zip(masks.layers, masks.weight, strict=True))
    act = dict(zip(masks.layers, masks.act, strict=True))
    for r in frame.itertuples():
        expected = weight[r.layer] * math.sqrt(error[(r.layer, "weight", r.wbits)]) + act[r.layer] * math.sqrt(
            error[(r.layer, "act", r.abits)]
        )
        assert r.sensitivity == pytest.approx(expected, rel=1e-6)  # batch order of the error sums
    # fewer weight bits never cost less than 8 on a layer's weight term
    for name in layers:
        rows = frame[frame.layer == name].set_index(["wbits", "abits"])["weight_sensitivity"]
        assert rows[(2, 8)] >= rows[(8, 8)]


def test_registry_dispatches_pmq_config(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = data
    direct = pmq_scores(model, LOSS, (x, y), PAIRS, PMQConfig(progress=False))
    via = score(model, LOSS, (x, y), PAIRS, PMQConfig(progress=False))
    assert via["sensitivity"].tolist() == direct["sensitivity"].tolist()
    assert via.attrs["estimator"]["form"] == "pmq"


def test_reinit_scores_a_redrawn_copy_and_leaves_the_model(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = data
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    own = mask_scores(model, LOSS, (x, y))
    fresh = mask_scores(model, LOSS, (x, y), reinit=True, seed=3)
    again = mask_scores(model, LOSS, (x, y), reinit=True, seed=3)
    assert fresh.weight == again.weight  # seeded
    assert fresh.weight != own.weight
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_a_loss_that_ignores_the_model_is_refused(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = data

    def constant(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return (out * 0).sum()

    with pytest.raises(InputError, match="every mask gradient is 0"):
        mask_scores(model, constant, (x, y))
