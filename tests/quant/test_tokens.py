"""quant/tokens.py and the token-split quantization points: selection rule, fake-quant, exact mode = integer model."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch

from quant import primitives as P
from quant.calibrate import calibrate_
from quant.errors import InputError
from quant.integer import to_integer
from quant.models import create_model
from quant.plan import BitPlan, LayerBits
from quant.quantize import QuantConfig, activation_quantizers, quantize_
from quant.tokens import TokenSplit, check_fraction, high_token_count, high_token_mask
from quant.verify import verify_bit_exact

SPLIT_LAYERS = ("blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.1.mlp.fc2")


def split_plan(score: str, fraction: float = 0.25) -> BitPlan:
    layers = {name: LayerBits(6, 8, abits_low=3, token_fraction=fraction, token_score=score) for name in SPLIT_LAYERS}
    return BitPlan("mixbit_vit_test", layers, default=LayerBits(8, 8))


@cache
def split_testbed(score: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The 2-block random test ViT with four token-split GEMM inputs, calibrated; plus 16 held-out images."""
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(plan=split_plan(score), weight_method="minmax"))
    images = torch.randn(48, 1, 16, 16)
    calibrate_(model, images[:32])
    return model, images[32:]


def test_high_token_count_is_the_ceiling_of_the_fraction() -> None:
    assert high_token_count(17, 0.25) == 5  # 4.25 -> 5
    assert high_token_count(16, 0.25) == 4
    assert high_token_count(197, 0.5) == 99
    assert high_token_count(3, 0.01) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5, float("nan"), True])
def test_a_fraction_outside_zero_one_is_refused(fraction: float) -> None:
    with pytest.raises(InputError, match="outside \\(0, 1\\)"):
        check_fraction(fraction)
    with pytest.raises(InputError, match="outside"):
        LayerBits(8, 8, abits_low=4, token_fraction=fraction)


def test_the_mask_keeps_the_highest_scores_and_breaks_ties_by_position() -> None:
    scores = torch.tensor([[3, 9, 9, 1, 9, 0]])
    mask = high_token_mask(scores, 0.5)  # 3 of 6: the three 9s
    assert mask.tolist() == [[False, True, True, False, True, False]]
    assert high_token_mask(scores, 0.3).tolist() == [[False, True, True, False, False, False]]  # ties: earlier wins


def test_norm_scores_are_l1_norms_and_random_scores_ignore_the_data() -> None:
    x = torch.tensor([[[1, -2], [0, 0], [5, 1]]])
    assert TokenSplit(0.5, "norm").scores(x).tolist() == [[3, 0, 6]]
    a = TokenSplit(0.5, "random", seed=7).mask(x)
    b = TokenSplit(0.5, "random", seed=7).mask(-x * 3)
    assert a.tolist() == b.tolist() and int(a.sum()) == 2


def test_split_needs_both_keys_and_a_lower_low_width() -> None:
    with pytest.raises(InputError, match="both abits_low and token_fraction"):
        LayerBits(8, 8, abits_low=4)
    with pytest.raises(InputError, match="must be below"):
        LayerBits(8, 4, abits_low=4, token_fraction=0.5)
    bits = LayerBits.from_dict({"wbits": 8, "abits": 8, "abits_low": 4, "token_fraction": 0.25}, "x")
    assert bits.to_dict()["abits_low"] == 4 and LayerBits(8, 8).to_dict().keys() == {
        "wbits", "abits", "weight_kind", "act_kind"
    }  # fmt: skip


def test_split_on_the_patch_embedding_or_an_attention_matmul_is_refused() -> None:
    model = create_model("mixbit_vit_test")
    for name in ("patch_embed.proj", "blocks.0.attn.matmul_qk"):
        plan = BitPlan("m", {name: LayerBits(8, 8, abits_low=4, token_fraction=0.5)}, default=LayerBits(8, 8))
        with pytest.raises(InputError, match="Linear GEMMs only"):
            quantize_(model, QuantConfig(plan=plan))


def test_fake_quant_split_puts_each_token_on_its_group_grid() -> None:
    model, images = split_testbed("norm")
    quantizer = model.blocks[0].attn.qkv.input_quant
    captured: dict[str, torch.Tensor] = {}
    hook = model.blocks[0].norm1.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o.detach()))
    with torch.no_grad():
        model(images[:4])
    hook.remove()
    x = captured["x"]
    high_p, low_p = quantizer.qparams(), quantizer.low.qparams()
    out = quantizer(x)
    mask = high_token_mask(P.decode_int(P.encode(x, high_p), high_p).abs().sum(-1), 0.25)
    assert int(mask[0].sum()) == high_token_count(x.shape[1], 0.25)
    assert torch.equal(out[mask], P.fake_quantize(x, high_p)[mask])
    assert torch.equal(out[~mask], P.fake_quantize(x, low_p)[~mask])
    assert int(quantizer.low.bits) == 3 and int(quantizer.bits) == 8
    assert "blocks.0.attn.qkv.input_quant.low" in activation_quantizers(model)


@pytest.mark.parametrize("score", ["norm", "cls_attn", "random"])
def test_integer_model_matches_exact_mode_with_token_splits(score: str) -> None:
    model, images = split_testbed(score)
    report = verify_bit_exact(model, images, to_integer(model))
    assert report.mismatches == 0, report.first
    # 2 blocks × 10 points + patch, pos_add, head + logits, and one group mask per split input
    assert report.points == 2 * 10 + 3 + 1 + len(SPLIT_LAYERS)
    masks = {name: n for name, n, _ in report.per_point if name.endswith(".input_quant.low")}
    assert set(masks) == {f"{name}.input_quant.low" for name in SPLIT_LAYERS}


def test_the_split_changes_the_integer_outputs_and_the_group_mask_is_what_the_rule_says() -> None:
    model, images = split_testbed("norm")
    run = to_integer(model).run(images)
    mask = run.codes["blocks.0.attn.qkv.input_quant.low"]
    tokens = mask.shape[1]
    assert (mask.sum(dim=1) == high_token_count(tokens, 0.25)).all()
    random_model, _ = split_testbed("random")
    random_mask = to_integer(random_model).run(images).codes["blocks.0.attn.qkv.input_quant.low"]
    assert (random_mask == random_mask[:1]).all()  # the same tokens for every image
    assert not torch.equal(mask, random_mask)


def test_export_refuses_a_token_split_model(tmp_path: Path) -> None:
    from quant.exports import export

    model, _ = split_testbed("norm")
    with pytest.raises(InputError, match="token-split"):
        export(model, "npz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_class_attention_scores_follow_the_attention_and_fall_back_to_the_norm_before_it() -> None:
    norm_model, images = split_testbed("norm")
    cls_model, _ = split_testbed("cls_attn")
    norm_codes = to_integer(norm_model).run(images).codes
    cls_codes = to_integer(cls_model).run(images).codes
    first = "blocks.0.attn.qkv.input_quant.low"  # no attention before block 0's qkv: the norm score
    assert torch.equal(norm_codes[first], cls_codes[first])
    later = "blocks.0.attn.proj.input_quant.low"
    assert not torch.equal(norm_codes[later], cls_codes[later])
    # the fake-quant model publishes the class-token row of each block's softmax, summed over heads
    captured: dict[str, torch.Tensor] = {}
    softmax = cls_model.blocks[0].attn.softmax
    hook = softmax.register_forward_hook(lambda m, i, o: captured.__setitem__("probs", o.detach()))
    with torch.no_grad():
        cls_model(images[:2])
    hook.remove()
    attention = captured["probs"][:, :, 0, :].sum(dim=1)
    assert TokenSplit(0.25, "cls_attn").scores(torch.zeros(2, 17, 4), attention) is attention
    assert torch.equal(
        TokenSplit(0.25, "cls_attn").scores(torch.ones(2, 17, 4, dtype=torch.int64)), torch.full((2, 17), 4)
    )
