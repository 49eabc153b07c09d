"""LampQ's type-aware Fisher (allocator/sensitivity/lampq.py): the scale invariants and the scores it gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from allocator.sensitivity import (
    Traces,
    TypeAwareFisherConfig,
    component_type,
    score,
    type_aware_fisher_scores,
    type_aware_traces,
    type_scales,
)
from allocator.sensitivity.scores import fisher_traces, quantization_errors, scores_from_traces
from quant import QuantConfig, quantize_
from quant.models import create_model

LOSS = nn.CrossEntropyLoss()
PAIRS = [(2, 8), (4, 4), (8, 8)]
LAYERS = (
    "blocks.0.attn.qkv",
    "blocks.0.attn.proj",
    "blocks.0.mlp.fc1",
    "blocks.1.attn.qkv",
    "blocks.1.attn.proj",
    "blocks.1.mlp.fc1",
    "blocks.1.attn.matmul_qk",
)


def _traces(weight: list[float], act: list[float]) -> Traces:
    n = len(LAYERS)
    return Traces(
        method="fisher",
        layers=LAYERS,
        weight_trace=tuple(weight),
        weight_numel=(30, 10, 20, 30, 10, 20, 5),
        act_trace=tuple(act),
        act_numel=(4,) * n,
        weight_draws=(0,) * n,
        act_draws=(0,) * n,
        draws=0,
        samples=8,
        seconds=0.0,
        weight_se=(0.0,) * n,
        act_se=(0.0,) * n,
    )


WEIGHT = [3.0, 40.0, 2.0, 9.0, 0.0, 6.0, 7.0]
ACT = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_pinned_scales() -> None:
    scales = type_scales(_traces(WEIGHT, ACT))
    # per-element weight traces: qkv 0.1, 0.3 (mean 0.2); proj 4.0, 0.0 (mean 2.0); fc1 0.1, 0.3; matmul 1.4
    assert scales == pytest.approx({"qkv": 5.0, "proj": 0.5, "fc1": 5.0, "matmul_qk": 1 / 1.4})


def test_each_type_averages_one_and_a_layer_keeps_its_operand_balance() -> None:
    raw = _traces(WEIGHT, ACT)
    scaled = type_aware_traces(raw)
    per_type: dict[str, list[float]] = {}
    for name, trace, numel in zip(scaled.layers, scaled.weight_trace, scaled.weight_numel, strict=True):
        per_type.setdefault(component_type(name), []).append(trace / numel)
    for kind, values in per_type.items():
        assert np.mean(values) == pytest.approx(1.0), kind
    for i in range(len(LAYERS)):
        # one α per layer: the weight/activation ratio is the raw Fisher's
        assert scaled.act_trace[i] * raw.weight_trace[i] == pytest.approx(raw.act_trace[i] * scaled.weight_trace[i])


def test_scaling_one_type_changes_nothing_after_normalisation() -> None:
    base = type_aware_traces(_traces(WEIGHT, ACT))
    louder = [w * (1000.0 if "proj" in name else 1.0) for w, name in zip(WEIGHT, LAYERS, strict=True)]
    loud_act = [a * (1000.0 if "proj" in name else 1.0) for a, name in zip(ACT, LAYERS, strict=True)]
    scaled = type_aware_traces(_traces(louder, loud_act))
    assert scaled.weight_trace == pytest.approx(base.weight_trace)
    assert scaled.act_trace == pytest.approx(base.act_trace)


def test_a_type_with_zero_traces_keeps_scale_one() -> None:
    weight = [0.0 if "proj" in name else w for w, name in zip(WEIGHT, LAYERS, strict=True)]
    assert type_scales(_traces(weight, ACT))["proj"] == 1.0


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = load_digits()
    x = torch.tensor(d.images[:32], dtype=torch.float32).unsqueeze(1) / 16.0
    torch.manual_seed(0)
    net = create_model("mixbit_vit_test", embed_dim=8, depth=2, num_heads=2, img_size=8)
    yield quantize_(net, QuantConfig(wbits=8, abits=8)).eval(), (x, torch.tensor(d.target[:32]))
    torch.set_num_threads(threads)


def test_scores_are_raw_fisher_scores_times_the_types_scale(tiny: tuple[nn.Module, tuple]) -> None:
    model, data = tiny
    frame = type_aware_fisher_scores(model, LOSS, data, PAIRS, TypeAwareFisherConfig(progress=False))
    raw_traces = fisher_traces(model, LOSS, data, normalize=False, progress=False)
    errors = quantization_errors(model, data, [2, 4, 8], [4, 8])
    raw = scores_from_traces(raw_traces, errors, PAIRS)
    scales = frame.attrs["type_scales"]
    assert set(scales) == {component_type(n) for n in raw_traces.layers}
    assert np.isfinite(frame["sensitivity"]).all() and (frame["sensitivity"] > 0).all()
    ratio = frame["sensitivity"].to_numpy() / raw["sensitivity"].to_numpy()
    expected = [scales[component_type(name)] for name in raw["layer"]]
    assert ratio == pytest.approx(expected, rel=1e-6)
    # the registry reaches it
    via = score(model, LOSS, data, PAIRS, TypeAwareFisherConfig(progress=False))
    assert via["sensitivity"].tolist() == pytest.approx(frame["sensitivity"].tolist())
    assert not math.isnan(via["sensitivity_se"].sum())
