"""The pipeline's scoring options reach the scorers: ``score_options`` equals a direct call of the sensitivity
pass with the config each option should build (issue #17: routing tests compared with direct calls).

Mutation tried (seen failing, reverted): ``score_options`` dropping ``act_method`` from the config — the
default case fails (the config's own default is minmax, the pipeline's mse). Built to catch, not tried:
the quadratic config for ``form="trace"``, ``method="fisher"`` ignored, ``act_kind`` not passed on as per-layer
kinds (log2 case); the second test keeps the cases from collapsing into one frame."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from allocator.pipeline.run import score_options
from allocator.sensitivity.configs import FisherConfig, HessianQuadraticConfig, HessianTraceConfig
from allocator.sensitivity.scores import quantizable_layers, sensitivity_table
from quant.calibrate import calibrate_
from quant.models import create_model, default_input
from quant.quantize import QuantConfig, quantize_

PAIRS = [(4, 4), (8, 8)]
COLUMNS = ["layer", "wbits", "abits", "sensitivity", "sensitivity_se"]
COMMON = {"batch_size": "auto", "seed": 0, "progress": False}


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    net = create_model("mixbit_vit_test").eval()
    return net, (default_input(net, batch=8), torch.randint(0, 10, (8,)))


def direct(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], config: Any) -> pd.DataFrame:
    probe = quantize_(copy.deepcopy(net), QuantConfig(wbits=8, abits=8))
    calibrate_(probe, batch[0])
    return sensitivity_table(probe, F.cross_entropy, batch, PAIRS, config=config)[COLUMNS]


@pytest.mark.parametrize(
    ("options", "config"),
    [
        ({}, lambda kinds: HessianQuadraticConfig(act_method="mse", act_kinds=None, **COMMON)),
        ({"act_method": "minmax"}, lambda kinds: HessianQuadraticConfig(act_method="minmax", act_kinds=None, **COMMON)),
        ({"act_kind": "log2"}, lambda kinds: HessianQuadraticConfig(act_method="mse", act_kinds=kinds, **COMMON)),
        (
            {"form": "trace", "max_draws": 2},
            lambda kinds: HessianTraceConfig(max_draws=2, act_method="mse", act_kinds=None, **COMMON),
        ),
        ({"method": "fisher"}, lambda kinds: FisherConfig(act_method="mse", act_kinds=None, **COMMON)),
    ],
    ids=["default", "minmax", "log2", "trace", "fisher"],
)
def test_score_options_equal_the_scorer_called_directly(setup: Any, options: dict, config: Any) -> None:
    net, batch = setup
    probe = quantize_(copy.deepcopy(net), QuantConfig(wbits=8, abits=8))
    kinds = dict.fromkeys(quantizable_layers(probe), "log2")
    got = score_options(net, batch, PAIRS, **options)
    expected = direct(net, batch, config(kinds))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_the_options_give_different_scores(setup: Any) -> None:
    """Each option changes the numbers (so the equalities above are not all one frame)."""
    net, batch = setup
    frames = {
        name: score_options(net, batch, PAIRS, **options)["sensitivity"]
        for name, options in {
            "default": {},
            "minmax": {"act_method": "minmax"},
            "log2": {"act_kind": "log2"},
            "trace": {"form": "trace", "max_draws": 2},
            "fisher": {"method": "fisher"},
        }.items()
    }
    names = list(frames)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not frames[first].equals(frames[second]), (first, second)
