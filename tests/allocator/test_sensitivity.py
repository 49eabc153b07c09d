"""Hutchinson traces against exact Hessians on models small enough to form them, Fisher, scores, bad input."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pandas.testing as pd_testing
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call

from allocator.sensitivity.scores import (
    component_type,
    fisher_traces,
    hessian_scores,
    hessian_traces,
    quantizable_layers,
    quantization_errors,
    scores_from_traces,
    sensitivity_table,
)
from quant import primitives as P
from quant.models import create_model
from sim.errors import InputError

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and two threads spin badly when other work shares the
    cores (the double backward of the dim-8 ViT took 130 ms with 2 threads under load, 7 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(d.target)


@pytest.fixture(scope="module")
def tiny_vit(digits: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """A depth-1, dim-8 ViT on 8×8 digits (720 quantizable weights), trained briefly so its Hessian is
    mostly positive, as at the end of training."""
    x, y = digits
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test", embed_dim=8, depth=1, num_heads=2, img_size=8)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for step in range(40):
        index = torch.arange(step * 32, step * 32 + 32) % 1500
        opt.zero_grad()
        LOSS(model(x[index]), y[index]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    return {f"{name}.weight": modules[name].weight.detach() for name in quantizable_layers(model)}


def _exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    weights = _weights(model)
    sizes = [w.numel() for w in weights.values()]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {k: p.view_as(w) for (k, w), p in zip(weights.items(), parts, strict=True)}
        return LOSS(functional_call(model, params, (x,)), y)

    theta = torch.cat([w.flatten() for w in weights.values()]).double()
    x = x.double()
    model.double()
    try:
        hessian = torch.autograd.functional.hessian(loss, theta, vectorize=True)
    finally:
        model.float()
    return hessian, sizes


def _exact_blocks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    hessian, sizes = _exact_hessian(model, x, y)
    bounds = np.cumsum([0, *sizes])
    blocks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    traces = [float(hessian[a:b, a:b].trace()) for a, b in blocks]
    # variance of one draw of vᵢᵀ(Hv)ᵢ: 2(‖Hᵢᵢ‖² − Σ diag²) from the block plus ‖Hᵢⱼ‖² from each other block
    variances = [
        float(2 * (hessian[a:b, a:b].pow(2).sum() - hessian[a:b, a:b].diag().pow(2).sum()))
        + float(hessian[a:b].pow(2).sum() - hessian[a:b, a:b].pow(2).sum())
        for a, b in blocks
    ]
    return {"x": x, "y": y, "hessian": hessian, "traces": traces, "variances": variances}


@pytest.fixture(scope="module")
def mlp(digits: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """64-12-10 MLP (928 quantizable weights) trained briefly: its per-layer Hutchinson estimates have a
    standard deviation per draw of 0.4-0.6× their trace, so 5 % is reachable in a few thousand draws."""
    x, y = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for step in range(100):
        index = torch.arange(step * 32, step * 32 + 32) % 1500
        opt.zero_grad()
        LOSS(model(x[index]), y[index]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def mlp_exact(mlp: nn.Module, digits: tuple[torch.Tensor, torch.Tensor]) -> dict:
    return _exact_blocks(mlp, digits[0][1500:1564], digits[1][1500:1564])


@pytest.fixture(scope="module")
def exact(tiny_vit: nn.Module, digits: tuple[torch.Tensor, torch.Tensor]) -> dict:
    return _exact_blocks(tiny_vit, digits[0][1500:1532], digits[1][1500:1532])


def test_per_layer_traces_within_5_percent_of_exact(mlp: nn.Module, mlp_exact: dict) -> None:
    traces = hessian_traces(
        mlp,
        LOSS,
        (mlp_exact["x"], mlp_exact["y"]),
        activations=False,
        max_draws=2000,
        tol=0,
        batch_draws=250,
        progress=False,
    )
    assert traces.layers == ("1", "3") and traces.draws == 2000
    for name, estimate, truth in zip(traces.layers, traces.weight_trace, mlp_exact["traces"], strict=True):
        assert estimate == pytest.approx(truth, rel=0.05), name
    # the sum of the per-layer traces against an independent whole-model Hutchinson estimate
    weights = _weights(mlp)
    sizes = [w.numel() for w in weights.values()]
    theta = torch.cat([w.flatten() for w in weights.values()]).requires_grad_(True)
    params = {k: p.view_as(w) for (k, w), p in zip(weights.items(), torch.split(theta, sizes), strict=True)}
    loss = LOSS(functional_call(mlp, params, (mlp_exact["x"],)), mlp_exact["y"])
    (gradient,) = torch.autograd.grad(loss, theta, create_graph=True)
    generator = torch.Generator().manual_seed(1234)
    draws = torch.randint(0, 2, (2000, theta.numel()), generator=generator).float() * 2 - 1
    (hv,) = torch.autograd.grad(gradient, theta, grad_outputs=draws, is_grads_batched=True)
    whole = float((draws * hv).sum(1).mean())
    assert sum(traces.weight_trace) == pytest.approx(whole, rel=0.02)
    assert whole == pytest.approx(float(mlp_exact["hessian"].trace()), rel=0.02)


@pytest.mark.slow
def test_vit_traces_unbiased_within_their_standard_error(tiny_vit: nn.Module, exact: dict) -> None:
    # on a ViT some layers' traces are small beside their cross terms (standard deviation per draw up to
    # ~8× the trace for fc2 here), so 5 % would take ~10⁵ draws; instead every layer must land within
    # 4 standard errors of exact, which a wrong split of Hv (a bias) would break
    draws = 4000
    traces = hessian_traces(
        tiny_vit,
        LOSS,
        (exact["x"], exact["y"]),
        activations=False,
        max_draws=draws,
        tol=0,
        batch_draws=200,
        progress=False,
    )
    assert traces.layers == (
        "patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head",
    )  # fmt: skip
    for name, estimate, truth, variance in zip(
        traces.layers, traces.weight_trace, exact["traces"], exact["variances"], strict=True
    ):
        assert abs(estimate - truth) < 4 * math.sqrt(variance / draws), name
    # the best-conditioned layers are within 5 % already
    assert traces.weight_trace[0] == pytest.approx(exact["traces"][0], rel=0.05)
    assert traces.weight_trace[-1] == pytest.approx(exact["traces"][-1], rel=0.05)


def test_same_seed_same_traces_whatever_the_batching(tiny_vit: nn.Module, exact: dict) -> None:
    data = (exact["x"][:8], exact["y"][:8])
    first = hessian_traces(tiny_vit, LOSS, data, max_draws=12, tol=0, batch_draws=4, seed=3, progress=False)
    again = hessian_traces(tiny_vit, LOSS, data, max_draws=12, tol=0, batch_draws=4, seed=3, progress=False)
    single = hessian_traces(tiny_vit, LOSS, data, max_draws=12, tol=0, batch_draws=1, seed=3, progress=False)
    other = hessian_traces(tiny_vit, LOSS, data, max_draws=12, tol=0, batch_draws=4, seed=4, progress=False)
    assert first.weight_trace == again.weight_trace and first.act_trace == again.act_trace
    np.testing.assert_allclose(first.weight_trace, single.weight_trace, rtol=1e-4)
    np.testing.assert_allclose(first.act_trace, single.act_trace, rtol=1e-4)
    assert first.weight_trace != other.weight_trace


def test_batches_of_data_weighted_like_one_batch(tiny_vit: nn.Module, exact: dict) -> None:
    x, y = exact["x"][:12], exact["y"][:12]
    options = {"activations": False, "max_draws": 6, "tol": 0, "progress": False}
    whole = hessian_traces(tiny_vit, LOSS, (x, y), **options)
    split = hessian_traces(tiny_vit, LOSS, [(x[:4], y[:4]), (x[4:], y[4:])], **options)
    # one weight vector per draw for all batches: vᵀ(Σ_b w_b H_b)v is the whole batch's vᵀHv. (With activations
    # their vectors, one per batch, enter the weights' estimates through zero-mean cross terms.)
    assert whole.samples == split.samples == 12
    np.testing.assert_allclose(whole.weight_trace, split.weight_trace, rtol=1e-4)


def test_stopping_rule_freezes_each_estimate(tiny_vit: nn.Module, exact: dict) -> None:
    data = (exact["x"][:8], exact["y"][:8])
    loose = hessian_traces(tiny_vit, LOSS, data, max_draws=60, tol=0.05, progress=False)
    assert min(loose.weight_draws) >= 2 and max(loose.weight_draws + loose.act_draws) <= loose.draws <= 60
    assert min(loose.weight_draws) < 60  # with 5 % some estimate settles before the cap
    never = hessian_traces(tiny_vit, LOSS, data, max_draws=5, tol=0, progress=False)
    assert never.draws == 5 and set(never.weight_draws) == {5}


class _MatMul(nn.Module):
    """Stands in for quant's QuantMatMul: ``forward(a, b) = a · bᵀ`` or ``a · b``."""

    def __init__(self, transpose_b: bool):
        super().__init__()
        self.transpose_b = transpose_b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ (b.transpose(-2, -1) if self.transpose_b else b)


class _TinyAttention(nn.Module):
    """One attention layer with matmul modules, mean-pooled into a classifier."""

    def __init__(self, dim: int = 4, tokens: int = 3, classes: int = 3):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.matmul_qk = _MatMul(transpose_b=True)
        self.matmul_av = _MatMul(transpose_b=False)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)
        self.tokens, self.dim = tokens, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = (self.matmul_qk(q, k) * self.dim**-0.5).softmax(-1)
        return self.head(self.proj(self.matmul_av(attn, v)).mean(1))


def _exact_activation_hessian(
    model: nn.Module, layer: str, operand: int, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss Hessian with respect to one GEMM input (flattened, all samples) and that input's value."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        seen = []
        handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[operand].detach()))
        model(x)
        handle.remove()
    shape = seen[0].shape

    def loss(flat: torch.Tensor) -> torch.Tensor:
        def add(m: nn.Module, args: tuple) -> tuple:
            args = list(args)
            args[operand] = args[operand] + flat.view(shape)
            return tuple(args)

        handle = module.register_forward_pre_hook(add)
        try:
            return LOSS(model(x), y)
        finally:
            handle.remove()

    return torch.autograd.functional.hessian(loss, torch.zeros(math.prod(shape))), seen[0]


def _exact_activation_trace(model: nn.Module, layer: str, operand: int, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(_exact_activation_hessian(model, layer, operand, x, y)[0].trace())


@pytest.mark.slow
def test_activation_traces_match_exact_including_attention_matmuls() -> None:
    torch.manual_seed(0)
    model = _TinyAttention()
    x, y = torch.randn(2, 3, 4), torch.tensor([0, 2])
    # a few steps towards a minimum (loss 2.0 -> 0.54), where the activation Hessians are mostly positive
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    for _ in range(6):
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    traces = hessian_traces(model, LOSS, (x, y), max_draws=20_000, tol=0, batch_draws=1000, progress=False)
    assert traces.layers == ("qkv", "matmul_qk", "matmul_av", "proj", "head")
    frame = traces.to_frame().set_index("layer")
    checks = [("qkv", "act", 0), ("matmul_qk", "act", 0), ("matmul_qk", "weight", 1), ("matmul_av", "act", 0),
              ("matmul_av", "weight", 1), ("proj", "act", 0), ("head", "act", 0)]  # fmt: skip
    for layer, operand, index in checks:
        truth = _exact_activation_trace(model, layer, index, x, y)
        estimate = frame.loc[layer, f"{operand}_trace"]
        assert truth > 0.05 and estimate == pytest.approx(truth, rel=0.05), (layer, operand)
    # per-sample element counts: q (3×4) for matmul_qk's first operand, softmax (3×3) for matmul_av's
    assert frame.loc["matmul_qk", "act_numel"] == 12 and frame.loc["matmul_av", "act_numel"] == 9
    assert frame.loc["matmul_av", "weight_numel"] == 12 and frame.loc["qkv", "weight_numel"] == 48


def test_weights_only_traces_drop_matmuls_and_leave_acts_nan() -> None:
    torch.manual_seed(0)
    model = _TinyAttention().eval()
    traces = hessian_traces(
        model, LOSS, (torch.randn(2, 3, 4), torch.tensor([0, 1])), activations=False, max_draws=3, progress=False
    )
    assert traces.layers == ("qkv", "proj", "head")
    assert all(math.isnan(a) for a in traces.act_trace)


def test_fisher_matches_per_sample_gradients_and_normalises_per_type(tiny_vit: nn.Module, exact: dict) -> None:
    x, y = exact["x"][:6], exact["y"][:6]
    raw = fisher_traces(tiny_vit, LOSS, [(x[:4], y[:4]), (x[4:], y[4:])], normalize=False, progress=False)
    # reference: a plain loop of per-sample backward passes
    head = tiny_vit.head.weight
    squares = torch.zeros_like(head)
    for i in range(6):
        (g,) = torch.autograd.grad(LOSS(tiny_vit(x[i : i + 1]), y[i : i + 1]), head)
        squares += g.pow(2)
    frame = raw.to_frame().set_index("layer")
    assert frame.loc["head", "weight_trace"] == pytest.approx(float(squares.sum() / 6), rel=1e-4)
    assert frame.loc["head", "act_numel"] == 8  # the pooled class token, one sample
    assert (frame["weight_trace"] > 0).all() and (frame["act_trace"] > 0).all()

    normalised = fisher_traces(tiny_vit, LOSS, (x, y), normalize=True, progress=False).to_frame()
    # one layer per type here, so each type's per-element mean becomes exactly 1
    per_element = normalised["weight_trace"] / normalised["weight_numel"]
    np.testing.assert_allclose(per_element, 1.0, rtol=1e-9)


def test_component_types() -> None:
    names = [
        "patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.3.mlp.fc1", "blocks.3.mlp.fc2",
        "blocks.0.attn.matmul_qk", "blocks.0.attn.matmul_av", "head", "layers.1.downsample.reduction", "foo",
    ]  # fmt: skip
    assert [component_type(n) for n in names] == [
        "patch_embed", "qkv", "proj", "fc1", "fc2", "matmul_qk", "matmul_av", "head", "patch_merge", "gemm",
    ]  # fmt: skip


def test_scores_combine_traces_and_quantizer_errors(tiny_vit: nn.Module, exact: dict) -> None:
    data = (exact["x"][:16], exact["y"][:16])
    traces = hessian_traces(tiny_vit, LOSS, data, max_draws=20, tol=0, progress=False)
    pairs = [(2, 4), (4, 4), (8, 8)]
    table = sensitivity_table(tiny_vit, LOSS, data, pairs, traces=traces)
    assert list(table.columns[:4]) == ["layer", "wbits", "abits", "sensitivity"]
    assert len(table) == len(traces.layers) * len(pairs)
    errors = quantization_errors(tiny_vit, data, [2, 4, 8], [4, 8], layers=traces.layers)
    # hand-computed Ω for one row
    row = table[(table.layer == "blocks.0.mlp.fc1") & (table.wbits == 2) & (table.abits == 4)].iloc[0]
    frame = traces.to_frame().set_index("layer").loc["blocks.0.mlp.fc1"]
    err = errors.set_index(["layer", "operand", "bits"])["error"]
    expected = (
        max(frame.weight_trace, 0) / frame.weight_numel * err[("blocks.0.mlp.fc1", "weight", 2)]
        + max(frame.act_trace, 0) / frame.act_numel * err[("blocks.0.mlp.fc1", "act", 4)]
    )
    assert row.sensitivity == pytest.approx(expected, rel=1e-9)
    # fewer bits never score lower (errors shrink with bits, negative traces count by their magnitude)
    for _, group in table.groupby("layer"):
        by_pair = group.set_index(["wbits", "abits"])["sensitivity"]
        assert by_pair[(2, 4)] >= by_pair[(4, 4)] >= by_pair[(8, 8)] >= 0
    fisher = sensitivity_table(tiny_vit, LOSS, data, pairs, method="fisher", progress=False)
    assert fisher.shape == table.shape and (fisher.sensitivity >= 0).all()


def _trained_tiny_attention() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = _TinyAttention()
    x, y = torch.randn(4, 3, 4), torch.tensor([0, 2, 1, 0])
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    for _ in range(6):
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), (x, y)


def _weight_error(weight: torch.Tensor, bits: int) -> torch.Tensor:
    p = P.fit(weight, bits, "uniform", method=P.WEIGHT_METHOD, symmetric=True, axis=0)
    return (P.fake_quantize(weight, p) - weight).flatten().double()


def _act_error(value: torch.Tensor, bits: int, method: str = "minmax") -> torch.Tensor:
    p = P.fit(value, bits, "uniform", method=method)
    return (P.fake_quantize(value, p) - value).flatten().double()


def test_quadratic_scores_equal_the_exact_quadratic_form_of_the_weights(tiny_vit: nn.Module, exact: dict) -> None:
    """ΔWᵀ H_block ΔW with the exact Hessian (double precision) and quant's own weight quantizer."""
    data = (exact["x"], exact["y"])
    pairs = [(2, 8), (4, 8)]
    table = hessian_scores(tiny_vit, LOSS, data, pairs, activations=False, progress=False, batch_draws=3)
    table = table.set_index(["layer", "wbits", "abits"])
    bounds = np.cumsum([0, *[w.numel() for w in _weights(tiny_vit).values()]])
    for (name, weight), (a, b) in zip(_weights(tiny_vit).items(), itertools.pairwise(bounds), strict=True):
        block = exact["hessian"][a:b, a:b]
        for wbits, abits in pairs:
            delta = _weight_error(weight.float(), wbits)
            truth = abs(float(delta @ block @ delta))
            got = table.loc[(name.removesuffix(".weight"), wbits, abits)]
            assert got.weight_sensitivity == pytest.approx(truth, rel=1e-3, abs=1e-9), (name, wbits)
            assert got.act_sensitivity == 0 and got.sensitivity == got.weight_sensitivity


def test_gauss_newton_form_equals_the_explicit_jacobian_form(tiny_vit: nn.Module, exact: dict) -> None:
    """curvature="gauss_newton": ΔWᵀJᵀ(∂²L/∂z²)JΔW with J the outputs' Jacobian (torch.func.jvp) and the loss
    Hessian over the outputs formed whole, double precision; it is never negative, and the Hessian form's
    count of negative estimates is reported."""
    from allocator.sensitivity import HessianQuadraticConfig, score

    x, y = exact["x"][:16], exact["y"][:16]
    pairs = [(2, 8), (3, 8)]
    config = HessianQuadraticConfig(estimator="exact", curvature="gauss_newton", activations=False, progress=False)
    table = score(tiny_vit, LOSS, (x, y), pairs, config).set_index(["layer", "wbits", "abits"])
    assert table.attrs["estimator"]["curvature"] == "gauss_newton"
    weights = _weights(tiny_vit)
    model = copy.deepcopy(tiny_vit).double()
    params = {k: v.double() for k, v in weights.items()}
    z = functional_call(model, params, (x.double(),)).detach()
    loss_hessian = torch.autograd.functional.hessian(lambda out: LOSS(out, y), z).reshape(z.numel(), z.numel())
    for name, weight in weights.items():
        for wbits, abits in pairs:
            delta = _weight_error(weight.float(), wbits).double().view_as(weight)
            tangents = {k: torch.zeros_like(v) for k, v in params.items()}
            tangents[name] = delta
            _, u = torch.func.jvp(lambda p: functional_call(model, p, (x.double(),)), (params,), (tangents,))
            truth = float(u.flatten() @ loss_hessian @ u.flatten())
            got = table.loc[(name.removesuffix(".weight"), wbits, abits)]
            assert truth >= 0
            assert got.weight_sensitivity == pytest.approx(truth, rel=1e-3, abs=1e-9), (name, wbits)
    hessian_table = score(tiny_vit, LOSS, (x, y), pairs, HessianQuadraticConfig(estimator="exact", progress=False))
    assert hessian_table.attrs["estimator"]["negative_estimates"] >= 0
    with pytest.raises(InputError, match="Gauss-Newton quadratic form is computed exactly"):
        score(tiny_vit, LOSS, (x, y), pairs, HessianQuadraticConfig(estimator="random_sign", curvature="gauss_newton"))


def test_quadratic_scores_equal_the_exact_form_of_every_activation_operand() -> None:
    """ΔAᵀ H_A ΔA for GEMM inputs and both attention-matmul operands; activation quantizers fitted on the
    calibration data by the chosen method, kᵀ and v (the matmuls' "weights") quantized as activations."""
    model, (x, y) = _trained_tiny_attention()
    pairs = [(3, 3), (8, 4)]
    for method in ("minmax", "mse"):
        table = hessian_scores(model, LOSS, (x, y), pairs, act_method=method, progress=False)
        table = table.set_index(["layer", "wbits", "abits"])
        checks = [("qkv", "act", 0), ("matmul_qk", "act", 0), ("matmul_qk", "weight", 1),
                  ("matmul_av", "act", 0), ("matmul_av", "weight", 1), ("head", "act", 0)]  # fmt: skip
        for layer, operand, index in checks:
            hessian, value = _exact_activation_hessian(model, layer, index, x, y)
            for wbits, abits in pairs:
                delta = _act_error(value, wbits if operand == "weight" else abits, method)
                truth = abs(float(delta @ hessian.double() @ delta))
                got = table.loc[(layer, wbits, abits), f"{operand if operand == 'act' else 'weight'}_sensitivity"]
                assert got == pytest.approx(truth, rel=1e-3, abs=1e-9), (method, layer, operand, wbits, abits)


def test_random_sign_estimate_converges_to_the_exact_form() -> None:
    """draws=k: every operand's error in one product, with random signs; the cross terms average out."""
    model, data = _trained_tiny_attention()
    pairs = [(3, 3)]
    exact = hessian_scores(model, LOSS, data, pairs, progress=False).set_index("layer")
    columns = ["weight_sensitivity", "act_sensitivity"]
    few = hessian_scores(model, LOSS, data, pairs, draws=4, seed=1, progress=False).set_index("layer")
    many = hessian_scores(model, LOSS, data, pairs, draws=3000, batch_draws=500, seed=1, progress=False)
    many = many.set_index("layer")
    truth = exact[columns].to_numpy()
    error_many = np.abs(many[columns].to_numpy() - truth).sum()
    error_few = np.abs(few[columns].to_numpy() - truth).sum()
    assert error_many < 0.05 * truth.sum() and error_many < error_few
    again = hessian_scores(model, LOSS, data, pairs, draws=4, seed=1, batch_draws=1, progress=False)
    np.testing.assert_allclose(again.set_index("layer")[columns].to_numpy(), few[columns].to_numpy(), rtol=1e-5)


def test_quadratic_scores_over_batches_weight_like_one_batch() -> None:
    model, (x, y) = _trained_tiny_attention()
    pairs = [(2, 3), (8, 8)]
    one = hessian_scores(model, LOSS, (x, y), pairs, progress=False)
    split = hessian_scores(model, LOSS, [(x[:1], y[:1]), (x[1:], y[1:])], pairs, calibration=(x, y), progress=False)
    columns = ["weight_sensitivity", "act_sensitivity"]
    np.testing.assert_allclose(split[columns].to_numpy(), one[columns].to_numpy(), rtol=1e-4, atol=1e-10)


def test_sensitivity_table_forms_and_bad_arguments(tiny_vit: nn.Module, exact: dict) -> None:
    data = (exact["x"][:8], exact["y"][:8])
    pairs = [(2, 4), (8, 8)]
    quadratic = sensitivity_table(tiny_vit, LOSS, data, pairs, progress=False)
    direct = hessian_scores(tiny_vit, LOSS, data, pairs, progress=False)
    np.testing.assert_allclose(quadratic.sensitivity, direct.sensitivity)
    trace = sensitivity_table(tiny_vit, LOSS, data, pairs, form="trace", max_draws=4, progress=False)
    assert trace.shape == quadratic.shape and not np.allclose(trace.sensitivity, quadratic.sensitivity)
    for _, group in quadratic.groupby("layer"):  # 2-bit weights and 4-bit activations cost more than 8/8
        by_pair = group.set_index(["wbits", "abits"])["sensitivity"]
        assert by_pair[(2, 4)] > by_pair[(8, 8)] >= 0
    with pytest.raises(InputError, match="form"):
        sensitivity_table(tiny_vit, LOSS, data, pairs, form="cubic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="draws"):
        hessian_scores(tiny_vit, LOSS, data, pairs, draws=0, progress=False)
    with pytest.raises(InputError, match="batch_draws"):
        hessian_scores(tiny_vit, LOSS, data, pairs, batch_draws=0, progress=False)
    with pytest.raises(InputError, match="calibration method"):
        hessian_scores(tiny_vit, LOSS, data, pairs, act_method="median", progress=False)
    with pytest.raises(InputError, match="calibration method"):
        quantization_errors(tiny_vit, data, [4], [4], act_method="median")
    with pytest.raises(InputError, match="act_kinds"):
        hessian_scores(tiny_vit, LOSS, data, pairs, act_kinds={"nope": "log2"}, progress=False)


def test_non_uniform_activation_kinds_change_the_error(tiny_vit: nn.Module, exact: dict) -> None:
    data = (exact["x"][:16], exact["y"][:16])
    uniform = quantization_errors(tiny_vit, data, [4], [3], layers=["blocks.0.mlp.fc2"])
    twin = quantization_errors(tiny_vit, data, [4], [3], layers=["blocks.0.mlp.fc2"],
                               act_kinds={"blocks.0.mlp.fc2": "twin_uniform"})  # fmt: skip
    uniform, twin = (frame.set_index("operand")["error"] for frame in (uniform, twin))
    assert twin["act"] != uniform["act"] and twin["weight"] == uniform["weight"]


# ---------------------------------------------------------------------------------------------- bad input


class _NoGemm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def test_model_without_quantizable_layers_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no quantizable layers"):
        hessian_traces(_NoGemm(), LOSS, (torch.randn(2, 4), torch.tensor([0, 1])), progress=False)
    with pytest.raises(InputError, match="no quantizable layers"):
        fisher_traces(_NoGemm(), LOSS, (torch.randn(2, 4), torch.tensor([0, 1])), progress=False)
    with pytest.raises(InputError, match="no quantizable layers"):
        hessian_scores(_NoGemm(), LOSS, (torch.randn(2, 4), torch.tensor([0, 1])), [(4, 4)], progress=False)


def test_loss_that_ignores_the_model_is_an_input_error() -> None:
    model = _TinyAttention()
    data = (torch.randn(2, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="does not depend"):
        hessian_traces(model, lambda out, y: torch.tensor(1.0), data, progress=False)
    with pytest.raises(InputError, match="does not depend"):
        fisher_traces(model, lambda out, y: out.sum() * 0, data, progress=False)
    with pytest.raises(InputError, match="does not depend"):
        hessian_scores(model, lambda out, y: torch.tensor(1.0), data, [(4, 4)], progress=False)


def test_nan_loss_is_an_input_error() -> None:
    model = _TinyAttention()
    data = (torch.full((2, 3, 4), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(InputError, match=r"not finite\) on data batch 0"):
        hessian_traces(model, LOSS, data, progress=False)
    with pytest.raises(InputError, match="not finite"):
        fisher_traces(model, LOSS, data, progress=False)
    with pytest.raises(InputError, match="layer qkv: input 0 has NaN"):  # found while fitting, before the loss
        hessian_scores(model, LOSS, data, [(4, 4)], progress=False)
    with pytest.raises(InputError, match="layer qkv: input 0 has NaN"):
        quantization_errors(model, data, [4], [4])
    with torch.no_grad():
        model.proj.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="layer proj: weight has NaN"):
        quantization_errors(model, (torch.randn(2, 3, 4), torch.tensor([0, 1])), [4], [4])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": ["nope"]}, "not quantizable layers"),
        ({"max_draws": 0}, "max_draws"),
        ({"batch_draws": 0}, "batch_draws"),
        ({"tol": -1.0}, "tol"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        hessian_traces(_TinyAttention(), LOSS, (torch.randn(2, 3, 4), torch.tensor([0, 1])), progress=False, **kwargs)


def test_bad_data_and_bit_pairs_are_input_errors() -> None:
    model = _TinyAttention()
    with pytest.raises(InputError, match="no batches"):
        hessian_traces(model, LOSS, [], progress=False)
    with pytest.raises(InputError, match="batch 0 is not"):
        hessian_traces(model, LOSS, [torch.randn(2, 3, 4)], progress=False)
    traces = hessian_traces(model, LOSS, (torch.randn(2, 3, 4), torch.tensor([0, 1])), max_draws=2, progress=False)
    with pytest.raises(InputError, match="bit pair"):
        scores_from_traces(traces, None, [(4,)])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown sensitivity method"):
        sensitivity_table(model, LOSS, (torch.randn(2, 3, 4), torch.tensor([0, 1])), [(4, 4)], method="magic")


def test_model_state_is_restored(tiny_vit: nn.Module, exact: dict) -> None:
    tiny_vit.train()
    flags = [p.requires_grad for p in tiny_vit.parameters()]
    try:
        hessian_traces(tiny_vit, LOSS, (exact["x"][:4], exact["y"][:4]), max_draws=2, progress=False)
        assert tiny_vit.training and [p.requires_grad for p in tiny_vit.parameters()] == flags
        fisher_traces(tiny_vit, LOSS, (exact["x"][:4], exact["y"][:4]), progress=False)
        assert tiny_vit.training and [p.requires_grad for p in tiny_vit.parameters()] == flags
        hessian_scores(tiny_vit, LOSS, (exact["x"][:4], exact["y"][:4]), [(4, 4)], progress=False)
        assert tiny_vit.training and [p.requires_grad for p in tiny_vit.parameters()] == flags
        assert all(p.grad is None for p in tiny_vit.parameters())
    finally:
        tiny_vit.eval()


# ---------------------------------------------------------------------------------------------- configs, memory


def test_stopping_rule_reaches_its_stated_standard_error(mlp: nn.Module, mlp_exact: dict) -> None:
    """rel_se: stop when every estimate's standard error is within rel_se of it; the reported errors are honest
    (every layer within 4 of them of the exact trace), and the run stops well before the cap."""
    target = 0.05
    traces = hessian_traces(
        mlp,
        LOSS,
        (mlp_exact["x"], mlp_exact["y"]),
        activations=False,
        max_draws=20_000,
        rel_se=target,
        batch_draws=50,
        progress=False,
    )
    assert traces.draws < 20_000
    for name, estimate, se, truth in zip(
        traces.layers, traces.weight_trace, traces.weight_se, mlp_exact["traces"], strict=True
    ):
        assert 0 < se <= target * abs(estimate), name
        assert abs(estimate - truth) <= 4 * se, name
    # one fewer batch of draws would not have met the target for some layer (the rule does not overshoot far)
    shorter = hessian_traces(
        mlp,
        LOSS,
        (mlp_exact["x"], mlp_exact["y"]),
        activations=False,
        max_draws=max(traces.draws - 50, 2),
        rel_se=0,
        batch_draws=50,
        progress=False,
    )
    ratios = [se / abs(t) for se, t in zip(shorter.weight_se, shorter.weight_trace, strict=True)]
    assert max(ratios) > target * 0.9


def test_micro_batches_give_the_same_exact_scores() -> None:
    """batch_size cuts the data into graphs of that many samples; the batch-weighted sum is the same form."""
    model, (x, y) = _trained_tiny_attention()
    pairs = [(2, 3), (8, 8)]
    columns = ["weight_sensitivity", "act_sensitivity"]
    whole = hessian_scores(model, LOSS, (x, y), pairs, progress=False)
    pieces = hessian_scores(model, LOSS, (x, y), pairs, batch_size=1, progress=False)
    np.testing.assert_allclose(pieces[columns].to_numpy(), whole[columns].to_numpy(), rtol=1e-4, atol=1e-10)
    errors = quantization_errors(model, (x, y), [2, 8], [3, 8])
    again = quantization_errors(model, (x, y), [2, 8], [3, 8], batch_size=1)
    np.testing.assert_allclose(again.error.to_numpy(), errors.error.to_numpy(), rtol=1e-4)  # float32 sums
    with pytest.raises(InputError, match="batch_size"):
        hessian_scores(model, LOSS, (x, y), pairs, batch_size=0, progress=False)


def test_activation_quantizers_are_fitted_on_a_bounded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_FIT_ELEMENTS (or one row) of each GEMM input is kept for fitting, however much data goes
    through."""
    from allocator.sensitivity import scores as S

    model, (x, y) = _trained_tiny_attention()
    monkeypatch.setattr(S, "MAX_FIT_ELEMENTS", 10)
    chosen = S._find_layers(model, None)
    recorded = S._recorded_inputs(model, chosen, [(x, y), (x, y)])
    assert recorded.inputs and all(v.numel() <= 10 + v.shape[1] for v in recorded.inputs.values())
    assert recorded.bad == ()


def test_registry_dispatches_each_config_like_the_direct_calls(tiny_vit: nn.Module, exact: dict) -> None:
    from allocator.sensitivity import (
        FisherConfig,
        HessianQuadraticConfig,
        HessianTraceConfig,
        ScorerConfig,
        registered_scorers,
        score,
    )

    data = (exact["x"][:8], exact["y"][:8])
    pairs = [(2, 4), (8, 8)]
    columns = ["layer", "wbits", "abits", "sensitivity"]
    from allocator.sensitivity import PMQConfig, TypeAwareFisherConfig

    builtin = {HessianQuadraticConfig, HessianTraceConfig, FisherConfig, TypeAwareFisherConfig, PMQConfig}
    assert set(registered_scorers()) == builtin
    quadratic = score(tiny_vit, LOSS, data, pairs, HessianQuadraticConfig(estimator="exact", progress=False))
    direct = hessian_scores(tiny_vit, LOSS, data, pairs, progress=False)
    pd_testing.assert_frame_equal(quadratic[columns], direct[columns])
    trace_config = HessianTraceConfig(max_draws=6, rel_se=0, seed=2, progress=False)
    traced = score(tiny_vit, LOSS, data, pairs, trace_config)
    traces = hessian_traces(tiny_vit, LOSS, data, max_draws=6, tol=0, probe="krylov", seed=2, progress=False,
                            se_floor=trace_config.se_floor, min_draws=trace_config.min_draws)  # fmt: skip
    errors = quantization_errors(tiny_vit, data, [2, 8], [4, 8])
    pd_testing.assert_frame_equal(traced[columns], scores_from_traces(traces, errors, pairs)[columns])
    fisher = score(tiny_vit, LOSS, data, pairs, FisherConfig(progress=False))
    expected = scores_from_traces(fisher_traces(tiny_vit, LOSS, data, progress=False), errors, pairs)
    pd_testing.assert_frame_equal(fisher[columns], expected[columns])
    assert fisher.attrs["estimator"]["estimator"] == "fisher traces"

    class Unknown(ScorerConfig):
        pass

    with pytest.raises(InputError, match="no scorer is registered for Unknown"):
        score(tiny_vit, LOSS, data, pairs, Unknown())


def test_auto_estimator_is_exact_for_small_models_and_random_signs_for_big_ones() -> None:
    from allocator.sensitivity import HessianQuadraticConfig, score

    model, data = _trained_tiny_attention()
    pairs = [(2, 3), (8, 8)]
    small = score(model, LOSS, data, pairs, HessianQuadraticConfig(progress=False))
    assert small.attrs["estimator"]["estimator"] == "exact" and small.attrs["estimator"]["requested"] == "auto"
    products = small.attrs["estimator"]["exact_products"]
    assert products == small.attrs["estimator"]["products"] > 0
    too_many = {"exact_max_products": products - 1, "progress": False}
    big = score(model, LOSS, data, pairs, HessianQuadraticConfig(grouping="none", **too_many))
    draws = HessianQuadraticConfig().draws
    assert big.attrs["estimator"]["estimator"] == "random_sign" and big.attrs["estimator"]["draws"] == draws
    assert (big.sensitivity_se > 0).any() and (small.sensitivity_se == 0).all()
    # the default grouping: roles when they fit in the products per bit width, each role a share of them
    default = score(model, LOSS, data, pairs, HessianQuadraticConfig(**too_many))
    roles = len({(component_type(layer), operand) for layer in default.layer for operand in ("weight", "act")})
    assert default.attrs["estimator"]["grouping"] == "role" and default.attrs["estimator"]["draws"] == draws // roles
    assert default.attrs["estimator"]["products"] == 2 * roles * (draws // roles)  # 2 bit widths per operand
    few = score(model, LOSS, data, pairs, HessianQuadraticConfig(draws=roles - 1, **too_many))
    assert few.attrs["estimator"]["grouping"] == "none" and few.attrs["estimator"]["products"] == 2 * (roles - 1)
    with pytest.raises(InputError, match="estimator"):
        HessianQuadraticConfig(estimator="nope")  # type: ignore[arg-type]


def test_old_keywords_build_typed_configs() -> None:
    from allocator.sensitivity import FisherConfig, HessianQuadraticConfig, HessianTraceConfig, make_config

    assert make_config("hessian", "quadratic", draws=None).estimator == "exact"
    assert make_config("hessian", "quadratic", draws=4) == HessianQuadraticConfig(estimator="random_sign", draws=4)
    assert isinstance(make_config("hessian", "trace", max_draws=5, tol=1e-3), HessianTraceConfig)
    assert make_config("fisher", normalize=False) == FisherConfig(normalize=False)
    with pytest.raises(InputError, match="takes no option"):
        make_config("fisher", max_draws=3)


def test_role_grouped_random_signs_converge_to_the_exact_form() -> None:
    """grouping="role": a product covers the operands of one role; still unbiased, and with one operand per role
    (this one-block model) every product is exact, so a few draws already equal the exact form."""
    from allocator.sensitivity import HessianQuadraticConfig, score

    model, data = _trained_tiny_attention()
    pairs = [(3, 3), (8, 4)]
    columns = ["weight_sensitivity", "act_sensitivity"]
    exact = hessian_scores(model, LOSS, data, pairs, progress=False)[columns].to_numpy()
    config = HessianQuadraticConfig(estimator="random_sign", grouping="role", draws=3, progress=False)
    grouped = score(model, LOSS, data, pairs, config)
    np.testing.assert_allclose(grouped[columns].to_numpy(), exact, rtol=1e-4, atol=1e-10)
    ungrouped = score(
        model,
        LOSS,
        data,
        pairs,
        HessianQuadraticConfig(estimator="random_sign", draws=3, grouping="none", progress=False),
    )
    assert not np.allclose(ungrouped[columns].to_numpy(), exact, rtol=1e-3)


def test_per_layer_probes_are_unbiased_without_cross_terms(tiny_vit: nn.Module, exact: dict) -> None:
    """probe="per_layer": a probe per tensor, so an estimate's variance is its own block's, 2(‖Hᵢᵢ‖² − Σ diag²),
    with none of the shared probe's cross terms; every layer lands within 4 of its standard errors of exact."""
    draws = 1500
    traces = hessian_traces(
        tiny_vit,
        LOSS,
        (exact["x"], exact["y"]),
        activations=False,
        max_draws=draws,
        tol=0,
        probe="per_layer",
        batch_draws=250,
        progress=False,
    )
    bounds = np.cumsum([0, *[w.numel() for w in _weights(tiny_vit).values()]])
    for name, estimate, se, truth, shared_variance, (a, b) in zip(
        traces.layers,
        traces.weight_trace,
        traces.weight_se,
        exact["traces"],
        exact["variances"],
        itertools.pairwise(bounds),
        strict=True,
    ):
        block = exact["hessian"][a:b, a:b]
        variance = float(2 * (block.pow(2).sum() - block.diag().pow(2).sum()))
        assert abs(estimate - truth) < 4 * math.sqrt(variance / draws), name
        assert se == pytest.approx(math.sqrt(variance / draws), rel=0.25), name  # the reported error is honest
        assert variance <= shared_variance + 1e-12, name


def test_per_layer_stopping_rule_stops_each_estimate_on_its_own(mlp: nn.Module, mlp_exact: dict) -> None:
    target = 0.05
    traces = hessian_traces(
        mlp,
        LOSS,
        (mlp_exact["x"], mlp_exact["y"]),
        activations=False,
        max_draws=20_000,
        rel_se=target,
        probe="per_layer",
        batch_draws=50,
        progress=False,
    )
    assert len(set(traces.weight_draws)) > 1  # the layers stopped at different draws
    for name, estimate, se, truth in zip(
        traces.layers, traces.weight_trace, traces.weight_se, mlp_exact["traces"], strict=True
    ):
        assert 0 < se <= target * abs(estimate), name
        assert abs(estimate - truth) <= 4 * se, name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deflated_probes_are_unbiased_with_honest_standard_errors(tiny_vit: nn.Module, exact: dict, seed: int) -> None:
    """probe="deflated" (Hutch++): every layer within 4 of its reported standard errors of the exact trace, for
    each of a fixed set of seeds; a block no larger than the rank is deflated whole, so its trace is exact (no
    spread left); and the deflated draws spread less than plain per-layer probes on the layers deflation is for."""
    rank, draws = 8, 400
    data = (exact["x"], exact["y"])
    traces = hessian_traces(tiny_vit, LOSS, data, activations=False, max_draws=draws, tol=0, probe="deflated",
                            rank=rank, batch_draws=200, seed=seed, progress=False)  # fmt: skip
    plain = hessian_traces(tiny_vit, LOSS, data, activations=False, max_draws=draws, tol=0, probe="per_layer",
                           batch_draws=200, seed=seed, progress=False)  # fmt: skip
    for name, estimate, se, truth in zip(
        traces.layers, traces.weight_trace, traces.weight_se, exact["traces"], strict=True
    ):
        assert abs(estimate - truth) <= 4 * se + 1e-5 * (1 + abs(truth)), name
    # the spread of a draw (SE × √draws) summed over layers: deflation removes the dominant directions
    assert sum(traces.weight_se) < sum(plain.weight_se)
    # a rank as large as a block deflates it whole: exact, nothing left to draw (attn.proj has 8 x 8 weights)
    whole = hessian_traces(tiny_vit, LOSS, data, layers=["blocks.0.attn.proj"], activations=False, max_draws=2,
                           tol=0, probe="deflated", rank=64, seed=seed, progress=False)  # fmt: skip
    truth = exact["traces"][list(traces.layers).index("blocks.0.attn.proj")]
    assert whole.weight_trace[0] == pytest.approx(truth, rel=1e-4, abs=1e-6)
    assert whole.weight_se[0] < 1e-4 * abs(truth) + 1e-7


def test_deflated_stopping_rule_reaches_its_stated_standard_error(mlp: nn.Module, mlp_exact: dict) -> None:
    """rel_se with deflated probes: each estimate stops when its standard error is within rel_se of it (before
    the cap), and lands within 4 of them of the exact trace."""
    target = 0.02
    traces = hessian_traces(mlp, LOSS, (mlp_exact["x"], mlp_exact["y"]), activations=False, max_draws=20_000,
                            rel_se=target, probe="deflated", rank=16, batch_draws=50, progress=False)  # fmt: skip
    assert traces.draws < 20_000
    for name, estimate, se, truth in zip(
        traces.layers, traces.weight_trace, traces.weight_se, mlp_exact["traces"], strict=True
    ):
        assert 0 < se <= target * abs(estimate), name
        assert abs(estimate - truth) <= 4 * se, name


@pytest.mark.parametrize("deflation", [{"probe": "deflated", "rank": 8}, {"probe": "krylov", "max_rank": 16}])
def test_deflated_traces_over_batches_weight_like_one_batch(tiny_vit: nn.Module, exact: dict, deflation: dict) -> None:
    """The deflation's basis, its exact part (and krylov's pilot draws) sum over data batches, weighted by batch
    size, as the draws do: two halves give the one-batch traces to within their standard errors."""
    data = (exact["x"], exact["y"])
    halves = [(exact["x"][:16], exact["y"][:16]), (exact["x"][16:], exact["y"][16:])]
    kwargs = {"activations": False, "max_draws": 300, "tol": 0, "progress": False, **deflation}
    one = hessian_traces(tiny_vit, LOSS, data, batch_draws=100, **kwargs)
    two = hessian_traces(tiny_vit, LOSS, halves, batch_draws=100, **kwargs)
    for name, a, b, se_a, se_b, truth in zip(
        one.layers, one.weight_trace, two.weight_trace, one.weight_se, two.weight_se, exact["traces"], strict=True
    ):
        assert abs(b - truth) <= 4 * se_b + 1e-5 * (1 + abs(truth)), name
        assert abs(a - b) <= 4 * math.hypot(se_a, se_b) + 1e-5 * (1 + abs(truth)), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_krylov_probes_are_unbiased_with_honest_standard_errors(tiny_vit: nn.Module, exact: dict, seed: int) -> None:
    """probe="krylov": with the basis held below the blocks' sizes (max_rank 16 and 32), every layer within 4 of
    its reported standard errors of the exact trace for each of a fixed set of seeds, the draws spreading less
    than plain per-layer probes'; with the default max_rank every block of this model (at most 256 weights) is
    spanned whole (or its range is: a Krylov space stops growing once it is invariant), so every trace is exact
    with nothing left to draw."""
    data = (exact["x"], exact["y"])
    plain = hessian_traces(tiny_vit, LOSS, data, activations=False, max_draws=400, tol=0, probe="per_layer",
                           batch_draws=200, seed=seed, progress=False)  # fmt: skip
    for max_rank in (16, 32):
        traces = hessian_traces(tiny_vit, LOSS, data, activations=False, max_draws=400, tol=0, probe="krylov",
                                max_rank=max_rank, batch_draws=200, seed=seed, progress=False)  # fmt: skip
        assert min(traces.weight_rank) >= 16 and max(traces.weight_rank) <= max_rank
        for name, estimate, se, truth in zip(
            traces.layers, traces.weight_trace, traces.weight_se, exact["traces"], strict=True
        ):
            assert abs(estimate - truth) <= 4 * se + 1e-5 * (1 + abs(truth)), (max_rank, name)
        assert sum(traces.weight_se) < sum(plain.weight_se)
    whole = hessian_traces(tiny_vit, LOSS, data, activations=False, max_draws=600, tol=0, probe="krylov",
                           rel_se=1e-6, seed=seed, progress=False)  # fmt: skip
    numel = [w.numel() for w in _weights(tiny_vit).values()]
    assert all(rank <= size for rank, size in zip(whole.weight_rank, numel, strict=True))
    assert any(rank == size for rank, size in zip(whole.weight_rank, numel, strict=True))
    for name, estimate, se, truth in zip(
        whole.layers, whole.weight_trace, whole.weight_se, exact["traces"], strict=True
    ):
        assert estimate == pytest.approx(truth, rel=1e-4, abs=1e-6), name
        assert se < 1e-4 * abs(truth) + 1e-7, name


def test_krylov_basis_grows_only_where_the_draws_need_it(tiny_vit: nn.Module, exact: dict) -> None:
    """A loose target keeps the first block (16) on every layer; a tight one grows the noisy layers' bases (by
    doubling, so 16 x 2^k or the block's size) and leaves well-resolved ones alone; max_rank and the memory
    budget cap every basis."""
    from allocator.sensitivity import scores as S

    data = (exact["x"], exact["y"])
    kwargs = {"activations": False, "max_draws": 50, "probe": "krylov", "progress": False}
    loose = hessian_traces(tiny_vit, LOSS, data, rel_se=10.0, **kwargs)
    assert set(loose.weight_rank) == {16}
    tight = hessian_traces(tiny_vit, LOSS, data, rel_se=0.001, **kwargs)
    numel = [w.numel() for w in _weights(tiny_vit).values()]
    assert any(r > 16 for r in tight.weight_rank)
    for rank, size in zip(tight.weight_rank, numel, strict=True):
        assert rank == size or (rank >= 16 and (rank & (rank - 1)) == 0), (rank, size)
    capped = hessian_traces(tiny_vit, LOSS, data, rel_se=0.001, max_rank=32, **kwargs)
    assert max(capped.weight_rank) == 32
    budget = S.BASIS_BUDGET_BYTES
    try:
        S.BASIS_BUDGET_BYTES = 4 * sum(numel) * 20  # room for 20 basis vectors per weight
        assert max(hessian_traces(tiny_vit, LOSS, data, rel_se=0.001, **kwargs).weight_rank) == 20
    finally:
        S.BASIS_BUDGET_BYTES = budget


def test_fixed_cost_runs_spend_draws_where_deflation_did_not(tiny_vit: nn.Module, exact: dict) -> None:
    """max_seconds without rel_se (a run at a fixed cost): once every estimate has min_draws, each chunk draws for
    the half worth the fewest plain draws. Plain per-layer probes are worth their draws, so they get equal draws
    (as a per-layer loop would); Krylov-deflated weights are worth more than their draws where deflation removed
    most of the spread, so the draws go to the others; the estimates stay within 4 standard errors of exact.
    (max_seconds is out of reach so that max_draws ends the run and the test does not depend on the machine.)"""
    data = (exact["x"], exact["y"])
    kwargs = {"activations": False, "max_draws": 200, "rel_se": 0, "max_seconds": 1e9, "batch_draws": 8}
    plain = hessian_traces(tiny_vit, LOSS, data, probe="per_layer", progress=False, **kwargs)
    assert max(plain.weight_draws) - min(plain.weight_draws) <= 8
    deflated = hessian_traces(tiny_vit, LOSS, data, probe="krylov", max_rank=16, progress=False, **kwargs)
    draws = np.array(deflated.weight_draws)
    assert draws.max() > 2 * draws.min()
    # a weight's gain from deflation: a plain draw's spread (the per_layer run's) over its residual draw's
    gain = (np.array(plain.weight_se) * np.sqrt(plain.weight_draws)) / (np.array(deflated.weight_se) * np.sqrt(draws))
    assert draws[gain.argmin()] == draws.max() and draws[gain.argmax()] < draws.max()
    for traces in (plain, deflated):
        for name, estimate, se, truth in zip(
            traces.layers, traces.weight_trace, traces.weight_se, exact["traces"], strict=True
        ):
            assert abs(estimate - truth) <= 4 * se, name


def test_krylov_stopping_rule_reaches_its_stated_standard_error(mlp: nn.Module, mlp_exact: dict) -> None:
    """rel_se with krylov probes (basis capped below the blocks' sizes so that draws remain): each estimate stops
    with its standard error within rel_se of it, and lands within 4 of them of the exact trace."""
    target = 0.02
    traces = hessian_traces(mlp, LOSS, (mlp_exact["x"], mlp_exact["y"]), activations=False, max_draws=20_000,
                            rel_se=target, min_draws=32, probe="krylov", max_rank=32, batch_draws=50,
                            progress=False)  # fmt: skip
    assert traces.draws < 20_000
    for name, estimate, se, truth in zip(
        traces.layers, traces.weight_trace, traces.weight_se, mlp_exact["traces"], strict=True
    ):
        assert 0 < se <= target * abs(estimate), name
        assert abs(estimate - truth) <= 4 * se, name


def test_se_floor_measures_small_traces_against_the_typical_layer() -> None:
    """The stopping rule's scale: |trace|, or for a trace near zero se_floor × the median per-element |trace| of
    its kind × its elements (weights and activations apart)."""
    from allocator.sensitivity import scores as S

    chosen = [S._Layer("a", nn.Linear(2, 2), False), S._Layer("b", nn.Linear(2, 2), False)]
    keys = [("a", "weight"), ("b", "weight"), ("a", "act"), ("b", "act")]
    numel = {("a", "weight"): 100, ("b", "weight"): 400, ("a", "act"): 10, ("b", "act"): 10}
    means = np.array([50.0, -0.01, 3.0, 1.0])
    # weights: per-element |trace| 0.5 and 2.5e-5, median 0.2500125 -> floor 0.1 x that x 400 = 10.0005 for b
    # acts: per-element 0.3 and 0.1, median 0.2 -> floor 0.1 x 0.2 x 10 = 0.2 for both
    scale = S._se_scale(means, keys, numel, chosen, 0.1)
    np.testing.assert_allclose(scale, [50.0, 10.0005, 3.0, 1.0])
    np.testing.assert_allclose(S._se_scale(means, keys, numel, chosen, 0.0), np.abs(means))


def test_se_floor_stops_a_run_once_every_error_is_small_on_its_scale(mlp: nn.Module, mlp_exact: dict) -> None:
    data = (mlp_exact["x"], mlp_exact["y"])
    kwargs = {"activations": False, "max_draws": 20_000, "rel_se": 0.02, "probe": "per_layer", "batch_draws": 50}
    plain = hessian_traces(mlp, LOSS, data, progress=False, **kwargs)
    floored = hessian_traces(mlp, LOSS, data, progress=False, se_floor=5.0, **kwargs)
    sizes = [w.numel() for w in _weights(mlp).values()]
    typical = float(np.median(np.abs(floored.weight_trace) / np.array(sizes)))
    assert floored.draws < plain.draws
    for name, estimate, se, size in zip(floored.layers, floored.weight_trace, floored.weight_se, sizes, strict=True):
        assert se <= 0.02 * max(abs(estimate), 5.0 * typical * size), name


def test_fisher_scores_is_the_contract_name_of_fisher_traces() -> None:
    import allocator

    assert allocator.fisher_scores is allocator.fisher_traces is fisher_traces
