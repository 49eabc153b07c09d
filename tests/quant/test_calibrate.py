"""quant.calibrate: calibration methods, the auto kind choice and its report, and bad calibration data."""

from __future__ import annotations

import math

import pytest
import torch

from quant.calibrate import calibrate_
from quant.errors import InputError
from quant.models import create_model
from quant.quantize import QuantConfig, activation_quantizers, quantize_


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_every_activation_quantizer_is_calibrated(method: str) -> None:
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig(8, 8))
    report = calibrate_(model, _images(), method=method)
    quantizers = activation_quantizers(model)
    assert report.method == method
    assert [q.name for q in report.quantizers] == list(quantizers)
    assert all(q.calibrated for q in quantizers.values())
    assert all(q.elements > 0 and q.kind == "uniform" for q in report.quantizers)
    assert "blocks.0.attn.matmul_av.a_quant" in report.choices and "blocks.1.add2.output_quant" in report.choices


def test_calibrated_w8a8_is_close_to_fp32() -> None:
    from quant.testbed import load_digits_split

    data = load_digits_split()
    model = create_model("mixbit_vit_digits", pretrained=True)
    x = data.x_test[:64]
    with torch.no_grad():
        ref = model(x)
        quantize_(model, QuantConfig(8, 8))
        calibrate_(model, data.x_train[:64])
        out = model(x)
    assert torch.isfinite(out).all()
    assert float(torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)) > 0.99


@pytest.mark.slow
def test_auto_picks_least_error_kind_and_reports_all() -> None:
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig(8, 4, act_kind="auto"))
    report = calibrate_(model, _images(), kinds=("uniform", "log2", "twin_uniform", "ptf"))
    frame = report.to_frame()
    assert set(frame.columns) >= {"quantizer", "bits", "requested_kind", "kind", "error", "uniform_error"}
    for q in report.quantizers:
        if q.requested_kind != "auto":
            assert q.kind == "uniform" and set(q.errors) == {"uniform"}  # residual stream, k and v
            continue
        assert set(q.errors) <= {"uniform", "log2", "twin_uniform", "ptf"} and "uniform" in q.errors
        assert q.errors[q.kind] <= min(q.errors.values()) * (1 + 1e-9) or q.kind == "uniform"
        if q.kind != "uniform":
            assert q.errors[q.kind] < q.errors["uniform"]


def test_auto_prefers_non_uniform_on_heavy_tails_and_uniform_on_ties() -> None:
    from quant.calibrate import _fit_one
    from quant.modules import Quantizer

    g = torch.Generator().manual_seed(0)
    heavy = torch.exp(torch.randn(64, 64, generator=g) * 1.5)  # log-normal: many small values, a long tail
    q = Quantizer(4, "auto")
    errors = _fit_one(q, heavy, "minmax", ("uniform", "log2", "twin_uniform", "v2sf"))
    assert q.kind != "uniform" and errors[q.kind] < errors["uniform"] * 0.99
    assert q.requested_kind == "auto" and q.calibrated
    flat = torch.rand(64, 64, generator=g)  # uniform data: no kind beats uniform by the margin
    q = Quantizer(4, "auto")
    _fit_one(q, flat, "minmax", ("uniform", "ptf", "o2sf", "twin_uniform"))
    assert q.kind == "uniform"


@pytest.mark.slow
def test_recalibration_after_rebits_and_state_dict_round_trip() -> None:
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig(6, 6, act_kind="auto"))
    calibrate_(model, _images())
    x = _images(4, seed=3)
    out = model(x)
    clone = quantize_(create_model("mixbit_vit_test"), QuantConfig(6, 6, act_kind="auto"))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x), out)  # kinds, shapes of per-channel buffers and scales all restored


def test_iterable_of_batches_and_labels() -> None:
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig())
    x = _images(8)
    report = calibrate_(model, [(x[:4], torch.zeros(4)), (x[4:], torch.zeros(4))])
    assert all(q.elements > 0 for q in report.quantizers)


def test_bad_calibration_data() -> None:
    model = quantize_(create_model("mixbit_vit_test"), QuantConfig())
    bad = _images()
    bad[0, 0, 3, 3] = math.nan
    with pytest.raises(InputError, match="NaN"):
        calibrate_(model, bad)
    with pytest.raises(InputError, match=r"shape \(N, C, H, W\)"):
        calibrate_(model, torch.randn(4, 16, 16))
    with pytest.raises(InputError, match="3 channels, the model expects 1"):
        calibrate_(model, torch.randn(2, 3, 16, 16))
    with pytest.raises(InputError, match="images are 32x32, the model expects 16x16"):
        calibrate_(model, torch.randn(2, 1, 32, 32))
    with pytest.raises(InputError, match="no images"):
        calibrate_(model, torch.empty(0, 1, 16, 16))
    with pytest.raises(InputError, match="no images"):
        calibrate_(model, [])
    with pytest.raises(InputError, match="method"):
        calibrate_(model, _images(), method="kl")
    with pytest.raises(InputError, match=r"run quant\.quantize_"):
        calibrate_(create_model("mixbit_vit_test"), _images())
