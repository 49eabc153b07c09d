"""Quantizers, fake-quant timm ViTs, calibration and integer-only inference. Knows nothing of ``sim``.

The torch-module parts (``quantize_``, ``calibrate_``, the testbed) import timm, so they load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from quant.errors import InputError
from quant.models import TESTBED_MODELS, create_model
from quant.plan import BitPlan, LayerBits
from quant.primitives import QParams, fake_quantize, quantization_error

__all__ = [
    "TESTBED_MODELS",
    "BitPlan",
    "CalibrationReport",
    "InputError",
    "IntegerModel",
    "LayerBits",
    "QParams",
    "QuantConfig",
    "calibrate",
    "calibrate_",
    "create_model",
    "evaluate",
    "export",
    "fake_quantize",
    "gemm_layers",
    "gemm_names",
    "load_digits_split",
    "load_image_folder",
    "quantization_error",
    "quantize_",
    "set_exact_",
    "to_integer",
    "train",
    "verify_bit_exact",
]

_LAZY = {
    "QuantConfig": "quant.quantize",
    "quantize_": "quant.quantize",
    "gemm_layers": "quant.quantize",
    "gemm_names": "quant.quantize",
    "set_exact_": "quant.exact",
    "calibrate_": "quant.calibrate",
    "CalibrationReport": "quant.calibrate",
    "load_digits_split": "quant.testbed",
    "load_image_folder": "quant.testbed",
    "train": "quant.testbed",
    "evaluate": "quant.testbed",
    "IntegerModel": "quant.integer",
    "to_integer": "quant.integer",
    "verify_bit_exact": "quant.verify",
    "export": "quant.exports",
}


def __getattr__(name: str) -> Any:
    if name == "calibrate":  # DESIGN.md's name; calibration mutates the model, hence calibrate_
        name = "calibrate_"
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
