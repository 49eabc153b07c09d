"""The tie between the simulator and integer inference: ``sim.functional_gemm`` pushing the integer model's
operands through the systolic array gives exactly the integer model's accumulator for that GEMM."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from quant.calibrate import calibrate_
from quant.integer import IntegerModel, to_integer
from quant.models import create_model
from quant.plan import BitPlan, LayerBits
from quant.primitives import decode_int
from quant.quantize import QuantConfig, quantize_
from sim import functional_gemm

PLAN = BitPlan(
    "mixbit_vit_test",
    {"blocks.0.mlp.fc1": LayerBits(4, 6), "blocks.0.attn.matmul_qk": LayerBits(8, 8, act_kind="v2sf")},
    default=LayerBits(8, 8),
)


@cache
def integer_run() -> tuple[IntegerModel, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(plan=PLAN, weight_method="minmax"))
    images = torch.randn(34, 1, 16, 16)
    calibrate_(model, images[:32])
    integer = to_integer(model)
    return integer, integer.run(images[32:]).codes


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (4, 16)])
def test_functional_array_computes_the_fc1_accumulator(dataflow: str, rows: int, cols: int) -> None:
    integer, codes = integer_run()
    fc1 = integer.blocks[0].fc1
    input_codes = codes["blocks.0.mlp.fc1.input_quant"][0]  # one image: (tokens, channels)
    expected = fc1.accumulate(input_codes)
    a = decode_int(input_codes, fc1.input_params).numpy().astype(np.int32)
    b = fc1.weight_t.numpy().astype(np.int32)
    got = functional_gemm(a, b, rows, cols, dataflow)
    np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_functional_array_computes_an_attention_accumulator(dataflow: str) -> None:
    integer, codes = integer_run()
    qk = integer.blocks[0].matmul_qk
    q_codes = codes["blocks.0.attn.matmul_qk.a_quant"][0, 1]  # image 0, head 1: (tokens, head_dim)
    k_codes = codes["blocks.0.attn.matmul_qk.b_quant"][0, 1]
    expected = qk.accumulate(q_codes, k_codes)
    a = decode_int(q_codes, qk.a_params).numpy().astype(np.int32)
    b = decode_int(k_codes, qk.b_params).numpy().astype(np.int32).T
    np.testing.assert_array_equal(functional_gemm(a, b, 8, 8, dataflow), expected.numpy())
