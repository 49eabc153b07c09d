"""Quantizers, fake-quant timm ViTs, calibration and integer-only inference. Knows nothing of ``sim``."""

from quant.errors import InputError
from quant.models import TESTBED_MODELS, create_model

__all__ = ["TESTBED_MODELS", "InputError", "create_model"]
