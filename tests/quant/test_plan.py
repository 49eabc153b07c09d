"""quant.plan: BitPlan mapping round trip, lookups and errors (files are read by sim.plan; see
tests/allocator/test_bit_plan.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant.errors import InputError
from quant.plan import BitPlan, LayerBits


def test_round_trip(tmp_path: Path) -> None:
    plan = BitPlan(
        "mixbit_vit_test",
        {"blocks.0.attn.qkv": LayerBits(4, 8), "blocks.0.attn.matmul_av": LayerBits(6, 4, act_kind="log2")},
        LayerBits(8, 8),
    )
    path = tmp_path / "plan.json"
    plan.save(path)
    again = BitPlan.from_dict(json.loads(path.read_text()))
    assert again == plan
    obj = json.loads(path.read_text())
    assert obj["default"] == {"wbits": 8, "abits": 8, "weight_kind": "uniform", "act_kind": "uniform"}
    assert obj["layers"]["blocks.0.attn.matmul_av"]["act_kind"] == "log2"


def test_contract_example_kinds_optional() -> None:
    plan = BitPlan.from_dict({"model": "m", "layers": {"head": {"wbits": 4, "abits": 8}}})
    assert plan.bits_for("head") == LayerBits(4, 8, "uniform", "uniform")
    with pytest.raises(InputError, match=r"layer 'blocks.0.mlp.fc1' is missing and the plan has no default"):
        plan.bits_for("blocks.0.mlp.fc1")


def test_check_layers() -> None:
    plan = BitPlan("m", {"head": LayerBits(4, 4), "nope": LayerBits(4, 4)}, LayerBits(8, 8))
    with pytest.raises(InputError, match="layer 'nope' is not a GEMM of the model"):
        plan.check_layers(["head", "blocks.0.attn.qkv"])
    BitPlan("m", {"head": LayerBits(4, 4)}, LayerBits(8, 8)).check_layers(["head", "blocks.0.attn.qkv"])


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"model": "m", "layers": {"head": {"wbits": 9, "abits": 8}}}, r"layers.head: wbits: unsupported bit width 9"),
        ({"model": "m", "layers": {"head": {"wbits": 4}}}, r"layers.head: missing 'abits'"),
        ({"model": "m", "layers": {"head": {"wbits": 4, "abits": 4, "act_kind": "cubic"}}}, "unknown quantizer kind"),
        ({"model": "m", "layers": {"head": {"wbits": 4, "abits": 4, "bias": 8}}}, "unknown key 'bias'"),
        ({"model": "m", "default": {"wbits": 1, "abits": 8}}, r"default: wbits: unsupported bit width 1"),
        ({"model": "m", "layers": []}, "'layers' must be an object"),
        ({"model": "m", "extra": 1}, "unknown key 'extra'"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_plans(obj: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        BitPlan.from_dict(obj)
