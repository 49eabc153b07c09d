"""quant/exports: each format is checked against what it claims — onnxruntime vs the integer model (0
mismatches), qonnx's executor vs the fake-quant model (within the stated tolerance), npz arrays vs the integer
model's tensors — and bad input is refused before anything is written."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from quant import intops
from quant.calibrate import calibrate_
from quant.errors import InputError
from quant.exports import FORMATS, export
from quant.exports.check import QONNX_TOLERANCE, check_npz, check_onnx_int, check_qonnx, qonnx_cleaned
from quant.exports.graph import Graph, IntOps
from quant.exports.onnx_int import ISQRT_ITERATIONS
from quant.integer import Widths, to_integer
from quant.models import create_model
from quant.plan import BitPlan, LayerBits
from quant.quantize import QuantConfig, quantize_

L = LayerBits
PLANS = {
    "w8a8": BitPlan.uniform("mixbit_vit_test", 8, 8),
    "w4a4": BitPlan.uniform("mixbit_vit_test", 4, 4),
    "mixed": BitPlan(
        "mixbit_vit_test",
        {"blocks.0.attn.qkv": L(6, 6), "blocks.0.attn.proj": L(2, 4), "blocks.1.mlp.fc2": L(8, 2)},
        default=L(4, 8),
    ),
    "every_kind": BitPlan(
        "mixbit_vit_test",
        {
            "blocks.0.attn.qkv": L(8, 6, act_kind="ptf"),
            "blocks.0.mlp.fc1": L(6, 6, act_kind="o2sf"),
            "blocks.0.attn.matmul_av": L(8, 8, act_kind="log2"),
            "blocks.1.attn.matmul_av": L(8, 4, act_kind="twin_uniform"),
            "blocks.0.mlp.fc2": L(4, 4, act_kind="twin_uniform"),
            "blocks.1.mlp.fc2": L(4, 4, act_kind="v2sf"),
            "blocks.1.attn.matmul_qk": L(8, 4, act_kind="v2sf"),
        },
        default=L(8, 8),
    ),
}
WIDE = Widths(accumulator_bits=64)  # every_kind's 8-bit log2 probabilities need a 40-bit accumulator


@cache
def quantized(plan: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A random-weight 2-block test ViT quantized by ``PLANS[plan]`` and calibrated, plus 16 other images."""
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    quantize_(model, QuantConfig(plan=PLANS[plan], weight_method="minmax"))
    images = torch.randn(48, 1, 16, 16)
    calibrate_(model, images[:32])
    return model, images[32:]


# ------------------------------------------------------------------------------------------------ onnx-int


@pytest.mark.parametrize("plan", list(PLANS))
def test_onnx_int_equals_the_integer_model_at_every_output(plan: str, tmp_path: Path) -> None:
    model, images = quantized(plan)
    widths = WIDE if plan == "every_kind" else None
    result = export(model, "onnx-int", tmp_path / "m.onnx", model_name="mixbit_vit_test", widths=widths)
    assert result.files == {str(tmp_path / "m.onnx"): (tmp_path / "m.onnx").stat().st_size}
    check = check_onnx_int(tmp_path / "m.onnx", to_integer(model, widths), images)
    assert check.mismatches == 0, check.first_mismatch
    assert check.outputs == 2 * 10 + 3 + 1  # every quantization point's codes and the logits
    assert check.checked > 16 * 10 * 17 * 48


def test_onnx_int_stores_hardware_widths(tmp_path: Path) -> None:
    model, _ = quantized("w8a8")
    export(model, "onnx-int", tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    types = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert types["logits"] == TensorProto.INT32
    assert types["blocks.0.attn.qkv.input_quant"] == TensorProto.UINT8  # asymmetric 8-bit activation codes
    casts = {n.output[0]: helper.get_attribute_value(n.attribute[0]) for n in proto.graph.node if n.op_type == "Cast"}
    matmul_inputs = [i for n in proto.graph.node if n.op_type == "MatMul" for i in n.input]
    assert len(matmul_inputs) == 2 * (2 * 6 + 2)  # patch embedding, 6 GEMMs per block, head
    assert all(casts.get(i) == TensorProto.INT32 for i in matmul_inputs)  # int32 accumulators: the worst case fits
    weights = {i.name: i.data_type for i in proto.graph.initializer if i.name.endswith(".weight_int")}
    assert weights and set(weights.values()) == {TensorProto.INT8}
    floats = [n.op_type for n in proto.graph.node if n.op_type in ("Div", "Floor", "Clip") and "images" in n.input]
    assert floats == ["Div"]  # the one float step: images / scale


def test_the_check_finds_a_changed_graph(tmp_path: Path) -> None:
    model, images = quantized("w8a8")
    export(model, "onnx-int", tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    for tensor in proto.graph.initializer:
        if tensor.name == "head.bias_fixed":
            values = onnx.numpy_helper.to_array(tensor) + 1
            tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    onnx.save(proto, tmp_path / "changed.onnx")
    check = check_onnx_int(tmp_path / "changed.onnx", to_integer(model), images)
    assert check.mismatches == 16 * 10 and check.mismatched_outputs == ("logits",)
    assert check.first_mismatch["output"] == "logits"


def _run_int_graph(build, x: np.ndarray) -> np.ndarray:
    g = Graph("t")
    name = g.add_input("x", TensorProto.INT64, list(x.shape))
    g.add_output(build(IntOps(g), name), "y", TensorProto.INT64)
    session = ort.InferenceSession(g.model(17).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_onnx_integer_kernels_equal_intops_on_edge_values() -> None:
    rng = np.random.default_rng(0)
    edges = [0, 1, 2, 3, 4, 15, 16, 17, (1 << 31) - 1, 1 << 31, (1 << 62) - 1, 1 << 62, (1 << 63) - 1]
    values = np.array(edges + list(rng.integers(0, 1 << 63, 2000, dtype=np.int64)), dtype=np.int64)
    got = _run_int_graph(lambda o, x: o.isqrt(x, ISQRT_ITERATIONS), values)
    assert np.array_equal(got, intops.isqrt(torch.from_numpy(values)).numpy())
    signed = rng.integers(-(1 << 40), 1 << 40, 4000, dtype=np.int64)
    signed[:6] = [-1, -2, -3, -(1 << 39), 1, 0]
    for shift in (1, 4, 16, 30):
        got = _run_int_graph(lambda o, x, s=shift: o.shift_round(x, s), signed)
        assert np.array_equal(got, intops.shift_round(torch.from_numpy(signed), shift).numpy()), shift
        got = _run_int_graph(lambda o, x, s=shift: o.shift_right(x, s), signed)
        assert np.array_equal(got, signed >> shift), shift


# --------------------------------------------------------------------------------------------------- npz


def test_npz_manifest_places_every_layer_and_reads_back(tmp_path: Path) -> None:
    model, _ = quantized("mixed")
    result = export(model, "npz", tmp_path / "out", model_name="mixbit_vit_test")
    assert sorted(Path(p).name for p in result.files) == ["manifest.json", "model.npz"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    layers = manifest["layers"]
    assert [layer["index"] for layer in layers] == list(range(len(layers)))
    names = [layer["name"] for layer in layers]
    assert names[0] == "patch_embed.proj" and names[-1] == "head"
    for layer in layers:  # each layer reads only what came before it
        assert all(
            source in ("images", "pos_embed") or names.index(source) < layer["index"] for source in layer["inputs"]
        )
    proj = next(layer for layer in layers if layer["name"] == "blocks.0.attn.proj")
    assert (proj["weight_bits"], proj["act_bits"]) == (2, 4)
    with np.load(tmp_path / "out" / "model.npz") as arrays:
        weight = arrays[proj["weight"]]
        assert weight.dtype == np.int8 and np.abs(weight).max() <= 1  # 2-bit symmetric codes: −1, 0, 1
    assert check_npz(tmp_path / "out", to_integer(model)).mismatches == 0


def test_npz_check_finds_a_changed_array(tmp_path: Path) -> None:
    model, _ = quantized("w8a8")
    export(model, "npz", tmp_path / "out")
    with np.load(tmp_path / "out" / "model.npz") as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays["blocks.1.mlp.fc1.shift"] = arrays["blocks.1.mlp.fc1.shift"] + 1
    np.savez(tmp_path / "out" / "model.npz", **arrays)
    check = check_npz(tmp_path / "out", to_integer(model))
    assert check.mismatched_arrays == ("blocks.1.mlp.fc1.shift",) and check.mismatches == 96


# ------------------------------------------------------------------------------------------------- qonnx


def test_qonnx_has_a_quant_node_at_every_point_and_passes_cleanup(tmp_path: Path) -> None:
    model, _ = quantized("mixed")
    result = export(model, "qonnx", tmp_path / "m.onnx")
    # 23 activation quantizers (10 per block, patch embedding, pos_add, head) + 10 weight quantizers
    assert result.details["quant_nodes"] == 23 + 10
    cleaned = qonnx_cleaned(tmp_path / "m.onnx", batch=1)
    assert cleaned.check_all_tensor_shapes_specified()
    quants = cleaned.get_nodes_by_op_type("Quant")
    bits = sorted({int(cleaned.get_initializer(node.input[3])) for node in quants})
    assert bits == [2, 4, 6, 8]
    attributes = [{a.name: helper.get_attribute_value(a) for a in node.attribute} for node in quants]
    weights = [
        a for a, node in zip(attributes, quants, strict=True) if cleaned.get_initializer(node.input[0]) is not None
    ]
    assert len(weights) == 10 and all(a["signed"] == 1 and a["narrow"] == 1 for a in weights)
    assert all(a["rounding_mode"] == b"HALF_UP" or a["rounding_mode"] == "HALF_UP" for a in attributes)


@pytest.mark.parametrize("plan", ["w8a8", "mixed"])
def test_qonnx_executor_equals_fake_quant_within_tolerance(plan: str, tmp_path: Path) -> None:
    model, images = quantized(plan)
    export(model, "qonnx", tmp_path / "m.onnx")
    check = check_qonnx(tmp_path / "m.onnx", model, images)
    assert check.within_tolerance, check.to_json()
    assert check.max_abs_logit_gap <= QONNX_TOLERANCE["max_logit_gap"] * check.logit_scale


def test_qonnx_refuses_kinds_it_cannot_express(tmp_path: Path) -> None:
    model, _ = quantized("every_kind")
    with pytest.raises(InputError, match=r"blocks\.0\.attn\.matmul_av\.a_quant: qonnx cannot express the 'log2'"):
        export(model, "qonnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_formats_and_paths_are_refused_before_writing(tmp_path: Path) -> None:
    model, _ = quantized("w8a8")
    assert FORMATS == ("qonnx", "onnx-int", "npz")
    with pytest.raises(InputError, match="unknown export format 'tflite'"):
        export(model, "tflite", tmp_path / "m")
    with pytest.raises(InputError, match="does not exist"):
        export(model, "onnx-int", tmp_path / "missing" / "m.onnx")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="exists and is a folder"):
        export(model, "onnx-int", tmp_path / "folder")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is a file"):
        export(model, "npz", tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_refused(tmp_path: Path) -> None:
    model, _ = quantized("w8a8")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="not writable"):
        export(model, "onnx-int", locked / "m.onnx")
