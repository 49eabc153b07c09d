"""quant.quantize and quant.modules: module swapping, GEMM names, bit plans, errors, timm families."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quant.errors import InputError
from quant.exact import set_exact_
from quant.models import create_model
from quant.modules import QuantAdd, QuantConv2d, QuantGELU, QuantLayerNorm, QuantLinear, QuantMatMul
from quant.plan import BitPlan, LayerBits
from quant.quantize import QuantConfig, activation_quantizers, gemm_layers, gemm_names, quantize_

BLOCK_GEMMS = ("attn.qkv", "attn.matmul_qk", "attn.matmul_av", "attn.proj", "mlp.fc1", "mlp.fc2")
TEST_GEMMS = ["patch_embed.proj"] + [f"blocks.{i}.{g}" for i in range(2) for g in BLOCK_GEMMS] + ["head"]


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_gemm_names_follow_the_contract() -> None:
    model = create_model("mixbit_vit_test")
    assert sorted(gemm_names(model)) == sorted(TEST_GEMMS)
    quantize_(model, QuantConfig())
    assert sorted(gemm_names(model)) == sorted(TEST_GEMMS)
    assert sorted(gemm_layers(model)) == sorted(TEST_GEMMS)


def test_modules_are_swapped_and_state_dict_keys_kept() -> None:
    model = create_model("mixbit_vit_test")
    keys = set(model.state_dict())
    quantize_(model, QuantConfig(4, 6))
    assert keys <= set(model.state_dict())
    block = model.blocks[0]
    assert isinstance(model.patch_embed.proj, QuantConv2d)
    assert isinstance(block.attn.qkv, QuantLinear) and isinstance(block.mlp.fc2, QuantLinear)
    assert isinstance(block.attn.matmul_qk, QuantMatMul) and isinstance(block.attn.matmul_av, QuantMatMul)
    assert isinstance(block.norm1, QuantLayerNorm) and isinstance(block.mlp.act, QuantGELU)
    assert isinstance(block.add1, QuantAdd) and isinstance(model.pos_add, QuantAdd)
    assert int(block.attn.qkv.weight_quant.bits) == 4 and int(block.attn.qkv.input_quant.bits) == 6
    assert block.attn.qkv.weight_quant.scale.shape == (block.attn.qkv.out_features,)
    assert int(block.add1.output_quant.bits) == 8  # residual stream keeps residual_bits


def test_plan_bits_reach_each_quantizer() -> None:
    model = create_model("mixbit_vit_test")
    plan = BitPlan(
        "mixbit_vit_test",
        {
            "blocks.0.attn.matmul_qk": LayerBits(3, 5),
            "blocks.0.attn.matmul_av": LayerBits(6, 4, act_kind="log2"),
            "blocks.1.mlp.fc1": LayerBits(2, 8),
        },
        LayerBits(8, 8),
    )
    quantize_(model, QuantConfig(plan=plan))
    attn = model.blocks[0].attn
    assert (int(attn.matmul_qk.a_quant.bits), int(attn.matmul_qk.b_quant.bits)) == (5, 3)  # abits: q, wbits: k
    assert (int(attn.matmul_av.a_quant.bits), int(attn.matmul_av.b_quant.bits)) == (4, 6)
    assert attn.matmul_av.a_quant.kind == "log2"
    assert int(model.blocks[1].mlp.fc1.weight_quant.bits) == 2
    assert int(model.blocks[1].mlp.fc2.weight_quant.bits) == 8


def test_quantize_again_rebits() -> None:
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(8, 8))
    quantize_(model, QuantConfig(3, 4))
    assert int(model.head.weight_quant.bits) == 3 and int(model.head.input_quant.bits) == 4
    assert len(gemm_layers(model)) == len(TEST_GEMMS)


def test_weights_quantized_before_calibration_activations_after() -> None:
    model = create_model("mixbit_vit_test")
    x = _images()
    ref = model(x)
    quantize_(model, QuantConfig(2, 8))
    w = model.head.quantized_weight()
    assert len(torch.unique(w[0])) <= 3  # 2-bit symmetric: {-s, 0, s} per channel
    assert not torch.allclose(model(x), ref)  # weights quantized at once
    assert not any(q.calibrated for q in activation_quantizers(model).values())


def test_training_through_fake_quant_has_gradients() -> None:
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(4, 4))
    from quant.calibrate import calibrate_

    calibrate_(model, _images(8))
    model.train()
    loss = model(_images(8, seed=1)).logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(model.blocks[0].attn.qkv.weight.grad.abs().sum()) > 0


def test_set_exact_flags_every_quantized_module() -> None:
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig())
    set_exact_(model, True)
    flagged = [m for m in model.modules() if getattr(m, "exact", False)]
    kinds = {type(m).__name__ for m in flagged}
    assert {"Quantizer", "QuantLinear", "QuantConv2d", "QuantMatMul", "QuantSoftmax", "QuantGELU"} <= kinds
    assert {"QuantLayerNorm", "QuantAdd"} <= kinds
    set_exact_(model, False)
    assert not any(getattr(m, "exact", False) for m in model.modules())


def test_errors() -> None:
    model = create_model("mixbit_vit_test")
    with pytest.raises(InputError, match="unsupported bit width 9"):
        QuantConfig(wbits=9)
    with pytest.raises(InputError, match="unsupported bit width 1"):
        QuantConfig(abits=1)
    with pytest.raises(InputError, match="unknown quantizer kind"):
        QuantConfig(act_kind="cubic")
    with pytest.raises(InputError, match=r"layer 'blocks\.7\.attn\.qkv' is not a GEMM of the model"):
        quantize_(model, QuantConfig(plan=BitPlan("m", {"blocks.7.attn.qkv": LayerBits(4, 4)}, LayerBits(8, 8))))
    with pytest.raises(InputError, match=r"layer 'patch_embed\.proj' is missing and the plan has no default"):
        quantize_(model, QuantConfig(plan=BitPlan("m", {"head": LayerBits(4, 4)})))
    with pytest.raises(InputError, match="weights are quantized uniform only"):
        quantize_(model, QuantConfig(plan=BitPlan("m", {"head": LayerBits(4, 4, weight_kind="log2")}, LayerBits(8, 8))))
    assert not any(isinstance(m, QuantLinear) for m in model.modules())  # failed calls changed nothing
    with pytest.raises(InputError, match="no Linear, Conv2d or attention GEMM"):
        quantize_(nn.Sequential(nn.ReLU()), QuantConfig())


@pytest.mark.slow
def test_deit_small_224_quantizes_calibrates_and_runs() -> None:
    from quant.calibrate import calibrate_

    torch.manual_seed(0)
    model = create_model("deit_small_patch16_224")
    x = torch.randn(2, 3, 224, 224)
    ref = model(x)
    quantize_(model, QuantConfig(8, 8))
    assert len(gemm_layers(model)) == 1 + 12 * 6 + 1
    report = calibrate_(model, x[:1])
    assert all(q.kind == "uniform" for q in report.quantizers)
    out = model(x)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert float(torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0).detach()) > 0.5


@pytest.mark.slow
def test_swin_quantizes_calibrates_and_runs() -> None:
    from quant.calibrate import calibrate_

    torch.manual_seed(0)
    model = create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2), num_classes=10)
    names = gemm_names(model)
    assert "layers.1.downsample.reduction" in names and "layers.0.blocks.1.attn.matmul_av" in names
    x = torch.randn(1, 3, 224, 224)
    quantize_(model, QuantConfig(6, 6))
    assert isinstance(model.layers[1].downsample.reduction, QuantLinear)
    calibrate_(model, x)
    out = model(x)
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_exact_mode_dispatches_every_op_to_quant_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn.functional as F

    import quant.exact as exact

    calls: list[str] = []
    float_ops = {  # stand-ins with the float semantics, recording that exact mode reached them
        "quantize": lambda m, x: x,
        "linear": lambda m, x: F.linear(x, m.quantized_weight(), m.bias),
        "conv2d": lambda m, x: m._conv_forward(x, m.quantized_weight(), m.bias),
        "matmul": lambda m, a, b: a @ (b.transpose(-2, -1) if m.transpose_b else b),
        "softmax": lambda m, x: x.softmax(dim=m.dim),
        "gelu": lambda m, x: F.gelu(x),
        "layernorm": lambda m, x: F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps),
        "add": lambda m, a, b: a + b,
    }
    for op, fn in float_ops.items():
        monkeypatch.setattr(exact, op, lambda *args, _op=op, _fn=fn: calls.append(_op) or _fn(*args))
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig())
    x = _images(2)
    with torch.no_grad():
        ref = model(x)
        set_exact_(model, True)
        out = model(x)
    assert set(calls) == set(float_ops) - {"quantize"}  # the modules call exact before their own quantizers
    assert torch.allclose(out, ref, atol=1e-5)  # uncalibrated quantizers pass through: same float model
