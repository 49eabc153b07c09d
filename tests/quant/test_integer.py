"""quant/integer.py: the integer-only ViT matches the exact mode code for code, with integers only inside."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
import torch

from quant import primitives as P
from quant.calibrate import calibrate_
from quant.errors import InputError
from quant.integer import (
    ACT_FRAC_BITS,
    IntEncoder,
    IntGemm,
    WidthError,
    Widths,
    to_fixed,
    to_integer,
)
from quant.models import create_model
from quant.plan import BitPlan, LayerBits
from quant.quantize import QuantConfig, quantize_
from quant.verify import verify_bit_exact

L = LayerBits
MIXED = {  # 2/3/4/6/8-bit layers
    "patch_embed.proj": L(8, 8),
    "blocks.0.attn.qkv": L(6, 6),
    "blocks.0.attn.matmul_qk": L(4, 4),
    "blocks.0.attn.matmul_av": L(3, 3),
    "blocks.0.attn.proj": L(2, 4),
    "blocks.0.mlp.fc1": L(3, 6),
    "blocks.0.mlp.fc2": L(2, 8),
    "blocks.1.attn.qkv": L(4, 2),
    "blocks.1.mlp.fc2": L(8, 2),
}
EVERY_KIND = {  # every non-uniform activation quantizer kind, where its distribution suits it
    "blocks.0.attn.qkv": L(8, 6, act_kind="ptf"),
    "blocks.0.mlp.fc1": L(6, 6, act_kind="o2sf"),
    "blocks.0.attn.matmul_av": L(8, 8, act_kind="log2"),  # 8-bit log2: shifts up to 30, int64 accumulator
    "blocks.1.attn.matmul_av": L(8, 4, act_kind="twin_uniform"),
    "blocks.0.mlp.fc2": L(4, 4, act_kind="twin_uniform"),  # signed (post-GELU) layout
    "blocks.1.mlp.fc2": L(4, 4, act_kind="v2sf"),
    "blocks.1.attn.matmul_qk": L(8, 4, act_kind="v2sf"),  # signed q
    "blocks.1.mlp.fc1": L(4, 3, act_kind="ptf"),
    "blocks.1.attn.qkv": L(8, 8, act_kind="auto"),
}
WIDE = Widths(accumulator_bits=64)
"""The every_kind plan's 8-bit log2 probabilities decode up to 2^30: its attention·v accumulator needs 40 bits."""
PLANS = {
    "w8a8": BitPlan.uniform("mixbit_vit_test", 8, 8),
    "w4a4": BitPlan.uniform("mixbit_vit_test", 4, 4),
    "mixed": BitPlan("mixbit_vit_test", MIXED, default=L(8, 8)),
    "every_kind": BitPlan("mixbit_vit_test", EVERY_KIND, default=L(8, 8)),
}


@cache
def quantized_testbed(plan: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A random-weight 2-block test ViT, quantized by ``PLANS[plan]`` and calibrated; plus 16 held-out images.

    Shared between tests (built once): tests must not change it.
    """
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(plan=PLANS[plan], weight_method="minmax"))  # MSE clipping is slower, same paths
    images = torch.randn(48, 1, 16, 16)
    calibrate_(model, images[:32])
    return model, images[32:]


@pytest.mark.parametrize("plan", list(PLANS))
def test_integer_model_matches_exact_mode_everywhere(plan: str) -> None:
    model, images = quantized_testbed(plan)
    report = verify_bit_exact(model, images, to_integer(model, WIDE if plan == "every_kind" else None))
    assert report.mismatches == 0, report.first
    # every activation quantizer of the 2-block model (10 per block + patch, pos_add, head) and the logits
    assert report.points == 2 * 10 + 3 + 1
    assert report.checked == sum(elements for _, elements, _ in report.per_point) > 0
    assert report.to_json()["checked"] == report.checked and report.to_json()["mismatches"] == 0


def test_every_intermediate_is_an_integer_tensor() -> None:
    model, images = quantized_testbed("every_kind")
    run = to_integer(model, WIDE).run(images, trace=True)
    # every tensor the forward makes: per block 23, plus 6 accumulators and 2 residual sums the width checks see
    assert len(run.intermediates) == 2 * (23 + 8) + 8 + 3
    floats = [(name, dtype) for name, dtype in run.intermediates if dtype != torch.int64]
    assert floats == []
    assert run.logits.dtype == torch.int64
    assert all(codes.dtype == torch.int64 for codes in run.codes.values())


def test_integer_model_holds_integers_only() -> None:
    model, _ = quantized_testbed("w8a8")
    integer = to_integer(model)
    for name, gemm in integer.gemms().items():
        tensors = [gemm.mantissa, gemm.shift] + ([gemm.weight_t, gemm.bias] if isinstance(gemm, IntGemm) else [])
        assert all(t.dtype == torch.int64 for t in tensors), name
    assert integer.class_token.dtype == integer.pos_embed.dtype == torch.int64


def test_integer_logits_are_close_to_the_float_fake_quant_model() -> None:
    model, images = quantized_testbed("w8a8")
    with torch.no_grad():
        reference = model(images).double()
    logits = to_integer(model)(images).double() / 2**ACT_FRAC_BITS
    # Shiftmax / ShiftGELU / I-LayerNorm approximations: measured 0.085 on this model, whose logits reach 0.19
    assert (logits - reference).abs().max().item() < 0.15


def test_accumulator_widths_follow_the_worst_case() -> None:
    model, _ = quantized_testbed("every_kind")
    widths = to_integer(model).accumulators()
    assert widths["patch_embed.proj"] == (widths["patch_embed.proj"][0], torch.int32)
    bits, dtype = widths["blocks.0.attn.matmul_av"]  # 8-bit log2 probabilities decode up to 2^30
    assert bits > 32 and dtype == torch.int64
    assert all(dtype == torch.int32 for name, (bits, dtype) in widths.items() if bits <= 32)


def test_a_model_built_to_overflow_names_the_layer_and_tensor() -> None:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(wbits=8, abits=8, weight_method="minmax"))
    images = torch.randn(8, 1, 16, 16)
    calibrate_(model, images)
    with torch.no_grad():  # fc1 outputs near 4e4 leave the int32 fixed point (16 fraction bits: |x| < 2^15)
        model.blocks[1].mlp.fc1.bias += 4e4
    overflow = r"^blocks\.1\.mlp\.fc1: fixed-point tensor 'out' \(blocks\.1\.mlp\.fc1\.out\) overflows its 32-bit"
    with pytest.raises(WidthError, match=overflow):
        to_integer(model).run(images)
    # with a wider fixed point, the GELU's x·σ(1.702x) is the next tensor to leave its 32 bits
    inner = r"^blocks\.1\.mlp\.act: intermediate 'product' \(blocks\.1\.mlp\.act\.product\) overflows its 32-bit"
    with pytest.raises(WidthError, match=inner):
        to_integer(model, Widths(activation_bits=40)).run(images)
    assert to_integer(model, Widths(activation_bits=40, nonlinear_bits=48)).run(images).logits.shape == (8, 10)


def test_accumulators_as_narrow_as_a_pe_model_says_are_checked() -> None:
    model, images = quantized_testbed("w8a8")
    with pytest.raises(WidthError, match=r"^patch_embed\.proj: accumulator 'acc' .* overflows its 12-bit width"):
        to_integer(model, Widths(accumulator_bits=12)).run(images)
    per_layer = Widths(accumulator_bits={"patch_embed.proj": 32, "blocks.0.attn.qkv": 10})
    with pytest.raises(WidthError, match=r"^blocks\.0\.attn\.qkv: accumulator"):
        to_integer(model, per_layer).run(images)
    with pytest.raises(InputError, match="from 2 to 64"):
        Widths(accumulator_bits=65)
    assert to_integer(model, Widths(check=False, accumulator_bits=2)).run(images).logits.shape == (16, 10)


def test_verify_reports_the_first_mismatch() -> None:
    model, images = quantized_testbed("w8a8")
    integer = to_integer(model)
    block = integer.blocks[1]
    broken_bias = block.fc1.bias.clone()
    broken_bias[0] += 1 << 20  # +16 on one fc1 channel: the GELU input and everything after it change
    object.__setattr__(integer, "blocks", (integer.blocks[0], replace(block, fc1=replace(block.fc1, bias=broken_bias))))
    report = verify_bit_exact(model, images, integer)
    assert report.mismatches > 0
    assert report.first is not None and report.first.tensor == "blocks.1.mlp.fc2.input_quant"
    assert report.first.integer != report.first.exact
    assert report.to_json()["first_mismatch"]["tensor"] == "blocks.1.mlp.fc2.input_quant"
    bad = dict((name, count) for name, _, count in report.per_point)
    assert bad["blocks.1.mlp.fc1.input_quant"] == 0 and bad["blocks.1.mlp.fc2.input_quant"] > 0


def test_verify_in_batches_counts_what_one_pass_counts() -> None:
    """Batches bound verify's memory; they must not change what is checked or found."""
    model, images = quantized_testbed("w8a8")
    integer = to_integer(model)
    block = integer.blocks[1]
    broken_bias = block.fc1.bias.clone()
    broken_bias[0] += 1 << 20
    object.__setattr__(integer, "blocks", (integer.blocks[0], replace(block, fc1=replace(block.fc1, bias=broken_bias))))
    whole = verify_bit_exact(model, images, integer)
    batched = verify_bit_exact(model, images, integer, batch_size=5)  # 16 images: batches of 5, 5, 5, 1
    assert (batched.images, batched.points, batched.checked) == (whole.images, whole.points, whole.checked)
    assert batched.mismatches == whole.mismatches > 0
    assert batched.per_point == whole.per_point
    assert batched.first == whole.first  # the first image holds the first mismatch: found in the first batch
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        verify_bit_exact(model, images, integer, batch_size=0)


def test_verify_leaves_the_model_in_float_mode() -> None:
    model, images = quantized_testbed("w8a8")
    with torch.no_grad():
        before = model(images)
    verify_bit_exact(model, images)
    with torch.no_grad():
        assert torch.equal(model(images), before)


def test_bad_input_is_reported() -> None:
    with pytest.raises(InputError, match="VisionTransformer"):
        to_integer(create_model("mixbit_vit_test"))
    torch.manual_seed(0)
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig())
    with pytest.raises(InputError, match="calibrat"):
        to_integer(model)
    calibrated, images = quantized_testbed("w8a8")
    with pytest.raises(InputError, match="image batch"):
        verify_bit_exact(calibrated, images[0])


@pytest.mark.parametrize("kind", P.KINDS)
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_integer_encoder_matches_primitives_encode(kind: str, bits: int) -> None:
    generator = torch.Generator().manual_seed(bits)
    if kind in ("log2", "twin_uniform", "v2sf") and bits % 2:
        data = torch.softmax(torch.randn(20, 100, generator=generator) * 3, dim=-1)  # post-Softmax, one-sided
    elif kind in ("twin_uniform", "v2sf"):
        data = torch.nn.functional.gelu(torch.randn(20, 100, generator=generator) * 2)  # post-GELU, signed
    elif kind in ("ptf", "o2sf"):
        data = torch.randn(50, 64, generator=generator) * torch.rand(64, generator=generator) * 10
    else:
        data = torch.randn(2000, generator=generator) * 3
    params = P.fit(data, bits, kind, method="minmax" if kind in ("ptf", "o2sf") else "mse")
    fixed = to_fixed(data.double())
    reference = P.encode(fixed.double() / 2**ACT_FRAC_BITS, params.to(torch.float64))
    assert torch.equal(IntEncoder.build(replace(params, axis=-1) if params.axis else params)(fixed), reference)


@pytest.mark.slow
def test_deit_small_random_weights_bit_exact() -> None:
    torch.manual_seed(0)
    model = create_model("deit_small_patch16_224")
    quantize_(model, QuantConfig(wbits=8, abits=8, weight_method="minmax"))
    calibrate_(model, torch.randn(2, 3, 224, 224))
    report = verify_bit_exact(model, torch.randn(2, 3, 224, 224))
    assert report.mismatches == 0, report.first
    assert report.points == 12 * 10 + 3 + 1
