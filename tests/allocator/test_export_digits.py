"""#20's measured case: the digits testbed (shipped checkpoint), three plans — W8A8, W4A4 and a mixed plan the
ILP chose at uniform W4A8's latency on zcu102 — exported and checked on 200 test images: onnx-int equals the
integer model at every output, qonnx's executor is within QONNX_TOLERANCE of the fake-quant model, and qonnx's
inference cost equals mixbit's MACs, BOPs and weight bits."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import pytest
import torch

import sim
from allocator.bridge.workload import workload_from_model
from allocator.cli.commands.export import compare_cost
from allocator.ilp.model import Limits, allocate
from allocator.ilp.problem import build_problem
from allocator.pipeline.run import predicted_uniform
from allocator.sweep import proxy_sensitivity
from quant.calibrate import calibrate_
from quant.exports import export
from quant.exports.check import check_onnx_int, check_qonnx
from quant.integer import to_integer
from quant.models import create_model
from quant.plan import BitPlan
from quant.quantize import QuantConfig, quantize_
from quant.testbed import load_digits_split

MODEL = "mixbit_vit_digits"


@cache
def digits() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    split = load_digits_split()
    net = create_model(MODEL, pretrained=True).eval()
    return net, torch.as_tensor(split.x_train[:256]).float(), torch.as_tensor(split.x_test[:200]).float()


def ilp_plan() -> BitPlan:
    """The minimum-Ω plan (size-proxy scores) as fast as uniform W4A8 on zcu102: mixed by construction."""
    net = digits()[0]
    target = sim.load_target("zcu102")
    workload = workload_from_model(net)
    pairs = [(w, a) for w in target.accelerator.weight_bits for a in target.accelerator.act_bits]
    problem = build_problem(workload, target, proxy_sensitivity(workload, pairs), pairs)
    budget = predicted_uniform(problem, 4, 8)
    assert budget is not None
    plan = allocate(problem, Limits(latency_ms=budget["latency_ms"])).check().plan()
    return BitPlan.from_dict({**plan, "model": MODEL})


def plan(name: str) -> BitPlan:
    return {"w8a8": lambda: BitPlan.uniform(MODEL, 8, 8), "w4a4": lambda: BitPlan.uniform(MODEL, 4, 4)}.get(
        name, ilp_plan
    )()


@pytest.mark.slow  # three plans, 200 images through onnxruntime and the qonnx executor
@pytest.mark.parametrize("name", ["w8a8", "w4a4", "mixed_ilp"])
def test_digits_exports_match_on_200_images(name: str, tmp_path: Path) -> None:
    net, calibration, test = digits()
    bits = plan(name)
    if name == "mixed_ilp":
        chosen = {(b.wbits, b.abits) for b in bits.layers.values()}
        assert len(chosen) > 1, chosen  # really mixed
    model = quantize_(copy.deepcopy(net), QuantConfig(plan=bits))
    calibrate_(model, calibration)

    export(model, "onnx-int", tmp_path / "m.int.onnx", model_name=MODEL)
    onnx_int = check_onnx_int(tmp_path / "m.int.onnx", to_integer(model), test)
    assert onnx_int.images == 200 and onnx_int.mismatches == 0, onnx_int.first_mismatch

    export(model, "qonnx", tmp_path / "m.qonnx.onnx", model_name=MODEL)
    qonnx = check_qonnx(tmp_path / "m.qonnx.onnx", model, test)
    assert qonnx.images == 200 and qonnx.within_tolerance, qonnx.to_json()
    cost = compare_cost(str(tmp_path / "m.qonnx.onnx"), net, bits)
    assert cost["equal"], cost
