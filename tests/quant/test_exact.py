"""quant/exact.py: the exact mode runs the integer kernels in float64, exactly, through the model's own forward."""

from __future__ import annotations

from functools import cache

import torch

from quant import exact
from quant import primitives as P
from quant.calibrate import calibrate_
from quant.exact import recording, set_exact_
from quant.integer import ACT_FRAC_BITS, quantizer_params, to_integer
from quant.models import create_model
from quant.modules import QuantAdd, QuantMatMul
from quant.quantize import QuantConfig, quantize_
from quant.verify import exact_codes


@cache
def calibrated_model() -> tuple[torch.nn.Module, torch.Tensor]:
    """A random-weight test ViT at W8A8, calibrated; plus 8 held-out images. Shared: tests restore its mode."""
    torch.manual_seed(1)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(wbits=8, abits=8, weight_method="minmax"))
    images = torch.randn(40, 1, 16, 16)
    calibrate_(model, images[:32])
    return model, images[32:]


def test_exact_logits_are_float64_on_the_fixed_point_grid() -> None:
    model, images = calibrated_model()
    set_exact_(model, True)
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        set_exact_(model, False)
    assert logits.dtype == torch.float64
    scaled = logits * 2**ACT_FRAC_BITS
    assert torch.equal(scaled, torch.floor(scaled))
    assert torch.equal(logits, to_integer(model)(images).double() / 2**ACT_FRAC_BITS)


def test_residual_stream_divided_by_its_step_is_the_codes() -> None:
    """The literal promise: each quantization point's float tensor / grid step (+ zero point) = the codes."""
    model, images = calibrated_model()
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda m, args, out, name=name: outputs.__setitem__(name, out))
        for name, module in model.named_modules()
        if isinstance(module, QuantAdd)
    ]
    try:
        codes, _ = exact_codes(model, images)
    finally:
        for hook in hooks:
            hook.remove()
    integer_codes = to_integer(model).run(images).codes
    assert len(outputs) == 5  # pos_add and two adds per block
    for name, value in outputs.items():
        params = quantizer_params(dict(model.named_modules())[name].output_quant)
        ratio = value / float(P.grid_step(params)) + float(params.zero_point)
        assert torch.equal(ratio, torch.round(ratio)), name  # exactly integral in float64
        assert torch.equal(ratio.to(torch.int64), integer_codes[f"{name}.output_quant"]), name
        assert torch.equal(codes[f"{name}.output_quant"], integer_codes[f"{name}.output_quant"]), name


def test_exact_mode_differs_from_float_fake_quant_by_a_measured_gap() -> None:
    model, images = calibrated_model()
    with torch.no_grad():
        float_logits = model(images)
    _, exact_logits = exact_codes(model, images)
    gap = (exact_logits - float_logits.double()).abs().max().item()
    # the integer approximations of softmax, GELU and LayerNorm move the logits: measured 0.067 here
    assert 0 < gap < 0.15


def test_power_of_two_attention_scale_is_read_without_rounding() -> None:
    q_fixed = torch.tensor([[3, -5, 7]], dtype=torch.int64)
    q_scaled = q_fixed.double() / 2**ACT_FRAC_BITS * 0.125  # what timm passes to matmul_qk: q·scale
    integers, frac_bits = exact._exact_int(q_scaled)
    assert frac_bits == ACT_FRAC_BITS + 3 and torch.equal(integers, q_fixed)
    on_grid, frac_bits = exact._exact_int(torch.tensor([1.5, -2.0], dtype=torch.float64))
    assert frac_bits == ACT_FRAC_BITS and on_grid.tolist() == [3 << 15, -(2 << 16)]


def test_exact_mode_records_every_quantizer_once() -> None:
    model, images = calibrated_model()
    seen: list[object] = []
    set_exact_(model, True)
    try:
        with recording(lambda quantizer, codes: seen.append(quantizer)), torch.no_grad():
            model(images)
    finally:
        set_exact_(model, False)
    matmuls = [m for m in model.modules() if isinstance(m, QuantMatMul)]
    assert len(seen) == len(set(map(id, seen))) == 2 * 10 + 3
    assert all(m.a_quant in seen and m.b_quant in seen for m in matmuls)


def test_kernels_are_rebuilt_when_a_quantizer_is_refitted() -> None:
    torch.manual_seed(2)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(wbits=8, abits=8, weight_method="minmax"))
    images = torch.randn(24, 1, 16, 16)
    calibrate_(model, images[:16])
    first, _ = exact_codes(model, images[16:])
    head = model.head.input_quant
    params = head.qparams()
    head.set_params(P.QParams(params.kind, params.bits, params.scale * 2, params.zero_point, params.shift))
    second, _ = exact_codes(model, images[16:])
    assert not torch.equal(first["head.input_quant"], second["head.input_quant"])
    assert torch.equal(second["head.input_quant"], to_integer(model).run(images[16:]).codes["head.input_quant"])
