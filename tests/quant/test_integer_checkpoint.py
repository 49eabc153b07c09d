"""Integer-only inference against the float fake-quant model on the trained digits checkpoint, with a relative
tolerance (issue #17: the random-weight test's absolute 0.15 on logits reaching 0.19 could not catch much).

Measured here (64 test images): W8A8 max |integer − float| 0.27 on logits reaching 4.31, relative 0.063, top-1
agreement 100 %; W4A4 relative 0.32 (the approximations of softmax/GELU/LayerNorm weigh more at 4 bits).

Mutations tried: requantization truncating instead of rounding half up is caught, narrowly (relative 0.1009);
Shiftmax's exp slope 1.5 instead of 1.4375 is not (a 4 % slope change stays inside 0.10). The bit-exact
tests (test_integer.py, test_exact.py) guard the arithmetic itself; this one guards the approximations' size."""

from __future__ import annotations

import pytest
import torch

from quant.calibrate import calibrate_
from quant.integer import ACT_FRAC_BITS, to_integer
from quant.models import create_model
from quant.quantize import QuantConfig, quantize_
from quant.testbed import load_data

CHECKPOINT_MODEL = "mixbit_vit_digits"


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    model = create_model(CHECKPOINT_MODEL, pretrained=True)
    split = load_data("digits", img_size=model.patch_embed.img_size[0], channels=1, seed=0)
    return torch.as_tensor(split.x_train[:64]).float(), torch.as_tensor(split.x_test[:64]).float()


def test_integer_logits_follow_the_float_model_on_the_trained_checkpoint(digits: tuple) -> None:
    calibration, test = digits
    model = quantize_(create_model(CHECKPOINT_MODEL, pretrained=True), QuantConfig(wbits=8, abits=8))
    calibrate_(model, calibration)
    with torch.no_grad():
        reference = model(test).double()
    logits = to_integer(model)(test).double() / 2**ACT_FRAC_BITS
    assert reference.abs().max() > 1.0  # trained logits, not the near-zero ones of random weights
    relative = float((logits - reference).abs().max() / reference.abs().max())
    assert relative < 0.10  # measured 0.063
    assert float((logits.argmax(1) == reference.argmax(1)).float().mean()) >= 0.95  # measured 1.0
