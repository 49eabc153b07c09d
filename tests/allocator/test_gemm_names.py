"""One list of a model's GEMMs: quant (``gemm_names``, owner of the list), the sensitivity pass
(``quantizable_layers``) and the traced workload (``workload_from_model``) name the same GEMMs with the same
roles (each in its own order: module registration or execution), over the model families mixbit supports
(testbed, ViT, DeiT, Swin)."""

from __future__ import annotations

import pytest
import torch

from allocator.bridge import workload_from_model
from allocator.sensitivity.scores import component_type, quantizable_layers
from quant.models import create_model
from quant.quantize import QuantConfig, gemm_names, quantize_

#: Small members of each family (few blocks) so the test runs in seconds; names and roles do not depend on depth.
FAMILIES = {
    "testbed": ("mixbit_vit_test", {}),
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "depth": 2}),
    "deit": ("deit_tiny_patch16_224", {"img_size": 32, "depth": 2}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {"img_size": 32, "depth": 1}),
    "swin": ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}),
}

#: The workload's GEMM kinds in the sensitivity pass's component words.
KIND_TO_COMPONENT = {"attn_qk": "matmul_qk", "attn_av": "matmul_av"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_quant_sensitivity_and_workload_name_the_same_gemms(family: str) -> None:
    torch.manual_seed(0)
    name, kwargs = FAMILIES[family]
    model = create_model(name, **kwargs)
    workload = workload_from_model(model)
    traced = [(g.name, KIND_TO_COMPONENT.get(g.kind, g.kind), g.b_is_weight) for g in workload.gemms]
    before = gemm_names(model)
    quantize_(model, QuantConfig())
    quant_names = gemm_names(model)
    assert quant_names == before  # the list does not depend on whether the model is quantized yet
    assert len(set(quant_names)) == len(quant_names)
    assert sorted(quantizable_layers(model)) == sorted(quant_names)
    roles = {name: (component_type(name), not name.endswith(("matmul_qk", "matmul_av"))) for name in quant_names}
    assert {name: (kind, weight) for name, kind, weight in traced} == roles
    assert len(traced) == len(quant_names)
