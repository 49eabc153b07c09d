"""quant/integer_swin.py: the integer-only Swin matches the fake-quant model's exact mode, element by element."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch

from quant.calibrate import calibrate_
from quant.errors import InputError
from quant.integer import ACT_FRAC_BITS, FixedScale, Widths, fixed_mean, integer_unsupported, to_integer
from quant.integer_swin import IntegerSwin
from quant.models import create_model
from quant.modules import QuantMean, QuantScale
from quant.plan import BitPlan, LayerBits
from quant.quantize import QuantConfig, quantize_
from quant.verify import verify_bit_exact

L = LayerBits
BASE = "swin_tiny_patch4_window7_224"
# Tiny Swins (timm's SwinTransformer class, random weights):
# "odd": 36 px, patch 2 -> 18×18 tokens: windows of 4 need padding to 20, the second merge pads 9 -> 10; head dim 12
#        (a 1/√12 attention scale: dyadic requantization of q).
# "even": 32 px, patch 4 -> 8×8, windows of 4, head dims 16 and 8 (power-of-two scales: no rounding of q).
SHAPES = {
    "odd": {
        "img_size": 36,
        "patch_size": 2,
        "window_size": 4,
        "embed_dim": 36,
        "depths": (2, 2, 2),
        "num_heads": (3, 3, 3),
    },
    "even": {"img_size": 32, "patch_size": 4, "window_size": 4, "embed_dim": 32, "depths": (2, 2), "num_heads": (2, 8)},
}
MIXED = {
    "patch_embed.proj": L(8, 8),
    "layers.0.blocks.0.attn.qkv": L(6, 6),
    "layers.0.blocks.0.attn.matmul_qk": L(4, 4),
    "layers.0.blocks.1.attn.matmul_av": L(3, 3),
    "layers.0.blocks.1.attn.proj": L(2, 4),
    "layers.1.downsample.reduction": L(3, 6),
    "layers.1.blocks.0.mlp.fc1": L(4, 5),
    "layers.1.blocks.1.mlp.fc2": L(2, 8),
}
EVERY_KIND = {
    "layers.0.blocks.0.attn.qkv": L(8, 6, act_kind="ptf"),
    "layers.0.blocks.1.mlp.fc1": L(6, 6, act_kind="o2sf"),
    "layers.0.blocks.1.attn.matmul_av": L(8, 8, act_kind="log2"),  # 8-bit log2: an int64 accumulator
    "layers.1.blocks.1.attn.matmul_av": L(8, 4, act_kind="twin_uniform"),
    "layers.0.blocks.0.mlp.fc2": L(4, 4, act_kind="twin_uniform"),
    "layers.1.blocks.0.mlp.fc2": L(4, 4, act_kind="v2sf"),
    "layers.1.blocks.0.attn.matmul_qk": L(8, 4, act_kind="v2sf"),
    "layers.1.downsample.reduction": L(6, 6, act_kind="ptf"),
    "head.fc": L(8, 8, act_kind="auto"),
}
PLANS = {
    "w8a8": BitPlan.uniform(BASE, 8, 8),
    "w4a4": BitPlan.uniform(BASE, 4, 4),
    "mixed": BitPlan(BASE, MIXED, default=L(8, 8)),
    "every_kind": BitPlan(BASE, EVERY_KIND, default=L(8, 8)),
}
WIDE = Widths(accumulator_bits=64)


@cache
def quantized_swin(plan: str, shape: str = "odd") -> tuple[torch.nn.Module, torch.Tensor]:
    """A random-weight tiny Swin quantized by ``PLANS[plan]``, calibrated on 8 images; plus 4 held-out images."""
    torch.manual_seed(0)
    model = create_model(BASE, num_classes=10, **SHAPES[shape])
    quantize_(model, QuantConfig(plan=PLANS[plan], weight_method="minmax"))
    size = SHAPES[shape]["img_size"]
    images = torch.randn(12, 3, size, size)
    calibrate_(model, images[:8])
    return model, images[8:]


@pytest.mark.parametrize(("plan", "shape"), [(p, "odd") for p in PLANS] + [("w8a8", "even"), ("w4a4", "even")])
def test_integer_swin_matches_exact_mode_everywhere(plan: str, shape: str) -> None:
    model, images = quantized_swin(plan, shape)
    integer = to_integer(model, WIDE if plan == "every_kind" else None)
    assert isinstance(integer, IntegerSwin)
    report = verify_bit_exact(model, images, integer)
    assert report.mismatches == 0, report.first
    blocks = sum(SHAPES[shape]["depths"])
    merges = len(SHAPES[shape]["depths"]) - 1
    # 10 quantizers per block, one per patch merging, the patch embedding's, head.fc's, and the logits
    assert report.points == 10 * blocks + merges + 3
    assert report.checked > 0


def test_shifted_blocks_have_a_mask_and_every_block_a_bias() -> None:
    model, _ = quantized_swin("w8a8")
    integer = to_integer(model)
    blocks = [block for _, stage in integer.stages for block in stage]
    # odd blocks shift by half a window (2) where the feature map is larger than one window
    assert [block.shift_size for block in blocks[:2]] == [(0, 0), (2, 2)]
    assert blocks[0].mask is None and blocks[1].mask is not None
    assert int(blocks[1].mask.min()) == -100 * 2**ACT_FRAC_BITS  # timm's −100 on the fixed-point grid
    assert all(block.rel_pos_bias.dtype == torch.int64 and block.rel_pos_bias.abs().sum() > 0 for block in blocks)


@pytest.mark.parametrize("part", ["rel_pos_bias", "mask"])
def test_a_wrong_bias_or_mask_is_caught(part: str) -> None:
    """The bias and the mask reach the softmax: changing one entry of either in the integer model breaks
    bit-exactness at that block's probabilities (a shift of a whole row would not: Shiftmax ignores it)."""
    model, images = quantized_swin("w8a8")
    integer = to_integer(model)
    merging, (first, second) = integer.stages[0]
    table = getattr(second, part).clone()
    if part == "mask":
        index = tuple(int(i) for i in (table != 0).nonzero()[0])
        table[index] = 0  # one masked pair let through
    else:
        table[0, 0, 0, 1] += 4 << ACT_FRAC_BITS  # +4.0 on one logit of every window's first head
    object.__setattr__(integer, "stages", ((merging, (first, replace(second, **{part: table}))), *integer.stages[1:]))
    report = verify_bit_exact(model, images, integer)
    assert report.mismatches > 0
    assert report.first is not None and report.first.tensor == "layers.0.blocks.1.attn.matmul_av.a_quant"


def test_integer_logits_are_close_to_the_float_fake_quant_model() -> None:
    model, images = quantized_swin("w8a8")
    with torch.no_grad():
        reference = model(images).double()
    logits = to_integer(model)(images).double() / 2**ACT_FRAC_BITS
    gap = (logits - reference).abs().max().item()
    # Shiftmax / ShiftGELU / I-LayerNorm approximations move the logits: measured 0.0048, logits reach 0.23
    assert 0 < gap < 0.02
    assert reference.abs().max().item() > 10 * gap


def test_accumulators_and_gemm_names_follow_the_contract() -> None:
    model, _ = quantized_swin("every_kind")
    integer = to_integer(model)
    gemms = integer.gemms()
    assert "layers.1.downsample.reduction" in gemms and "head.fc" in gemms and "patch_embed.proj" in gemms
    assert len(gemms) == 6 * 6 + 2 + 2
    bits, dtype = integer.accumulators()["layers.0.blocks.1.attn.matmul_av"]  # 8-bit log2 decodes up to 2^254
    assert bits > 32 and dtype == torch.int64


def test_fixed_scale_and_mean_round_as_documented() -> None:
    assert FixedScale.build(0.25).exponent == 2 and FixedScale.build(0.25).dyadic is None
    third = FixedScale.build(12**-0.5)
    assert third.exponent is None
    x = torch.tensor([0, 1, 2, 12, -12, 1000], dtype=torch.int64)
    assert third(x).tolist() == [0, 0, 1, 3, -3, 289]  # round half up of x/√12: 0.29, 0.58, 3.46, -3.46, 288.68
    values = torch.tensor([[[1], [2]], [[-1], [-2]]], dtype=torch.int64).reshape(1, 2, 2, 1)  # means 1.5 and -1.5
    assert fixed_mean(values, (2,)).flatten().tolist() == [2, -1]
    assert fixed_mean(values, (1, 2)).flatten().tolist() == [0]


def test_quantized_swin_carries_the_modules_exact_mode_needs() -> None:
    model, _ = quantized_swin("w8a8")
    assert isinstance(model.head.global_pool.pool, QuantMean)
    assert isinstance(model.layers[0].blocks[0].attn.q_scale, QuantScale)
    assert model.layers[0].blocks[0].attn.q_scale.scale == pytest.approx(12**-0.5)


def test_swin_structure_is_accepted_and_unquantized_swin_refused() -> None:
    float_swin = create_model(BASE, num_classes=10, **SHAPES["even"])
    assert integer_unsupported(float_swin) is None
    with pytest.raises(InputError, match=r"patch_embed\.proj is not quantized"):
        to_integer(float_swin)
    max_pooled = create_model(BASE, num_classes=10, global_pool="max", **SHAPES["even"])
    assert "pooling 'max'" in (integer_unsupported(max_pooled) or "")


def test_export_refuses_swin_with_one_line(tmp_path: Path) -> None:
    from quant.exports import export

    model, _ = quantized_swin("w8a8", "even")
    with pytest.raises(InputError, match=r"^export: SwinTransformer cannot be exported yet: .*ViT/DeiT only"):
        export(model, "npz", tmp_path / "npz")
    assert not (tmp_path / "npz").exists()


def test_every_intermediate_is_an_integer_tensor() -> None:
    model, images = quantized_swin("mixed")
    run = to_integer(model).run(images, trace=True)
    floats = [(name, dtype) for name, dtype in run.intermediates if dtype != torch.int64]
    assert floats == [] and len(run.intermediates) > 100
    assert any(name.endswith(".attn.q_scaled") for name, _ in run.intermediates)  # head dim 12: dyadic q scale
    assert run.logits.dtype == torch.int64
