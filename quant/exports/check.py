"""Checks of each export against what it claims, on the same images.

- ``check_onnx_int``: onnxruntime runs the ``onnx-int`` graph; every output (the logits and each
  quantization point's codes) must equal ``quant.integer.IntegerModel`` element by element.
- ``check_qonnx``: qonnx's own executor (``qonnx.core.onnx_exec.execute_onnx``) runs the QONNX graph; its
  logits must equal the fake-quant model's (float32) within ``QONNX_TOLERANCE``.
- ``qonnx_cost``: ``qonnx.util.inference_cost`` on the QONNX graph (after qonnx's cleanup), reduced to
  MACs, BOPs and weight bits per layer and in total, to be compared with mixbit's predictions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quant.integer import IntegerModel

__all__ = [
    "QONNX_TOLERANCE",
    "NpzCheck",
    "OnnxIntCheck",
    "QonnxCheck",
    "check_npz",
    "check_onnx_int",
    "check_qonnx",
    "qonnx_cost",
]

QONNX_TOLERANCE = {"max_logit_gap": 0.15, "mean_logit_gap": 0.02, "argmax_agreement": 0.99}
"""Float tolerance of the QONNX graph (qonnx executor, float32) against the fake-quant model (torch, float32),
as fractions of the logit scale max|logit|: the largest |Δ logit| over all images ≤ 0.15, the mean ≤ 0.02,
and the same predicted class on ≥ 99 % of images.

Why not bits: both sides compute the same float function, but softmax, GELU, LayerNorm and the matmul sums
round differently; a value on a rounding edge of a ``Quant`` node then takes the neighbouring code, and each
such flip feeds later quantizers. Measured on mixbit_vit_digits, 50 images, W8A8: the first flips are 2 of
57,800 post-softmax codes in block 0, growing to 4 % of codes by block 3; logit gaps on 200 images were 0.087
(W8A8) and 0.44 (W4A4) of scales 4.35 and 4.46 — 2 % and 10 % — with every predicted class equal."""


@dataclass(frozen=True)
class OnnxIntCheck:
    """onnxruntime vs the integer model: elements compared, mismatches, per-output mismatches, first mismatch."""

    images: int
    outputs: int
    checked: int
    mismatches: int
    mismatched_outputs: tuple[str, ...]
    first_mismatch: dict[str, Any] | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "outputs": self.outputs,
            "checked": self.checked,
            "mismatches": self.mismatches,
            "mismatched_outputs": list(self.mismatched_outputs),
            "first_mismatch": self.first_mismatch,
            "seconds": round(self.seconds, 3),
        }


def _session(path: str | os.PathLike[str]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(2, torch.get_num_threads()))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx_int(
    path: str | os.PathLike[str], integer: IntegerModel, images: torch.Tensor, batch: int = 50
) -> OnnxIntCheck:
    """Run the ``onnx-int`` graph under onnxruntime on ``images`` and compare every output with ``integer``."""
    import time

    began = time.perf_counter()
    session = _session(path)
    names = [output.name for output in session.get_outputs()]
    checked = mismatches = 0
    bad: dict[str, int] = {}
    first: dict[str, Any] | None = None
    for start in range(0, images.shape[0], batch):
        chunk = images[start : start + batch].to(torch.float32)
        got = dict(zip(names, session.run(names, {"images": chunk.numpy()}), strict=True))
        run = integer.run(chunk)
        want = {**run.codes, "logits": run.logits}
        for name in names:
            ours = got[name].astype(np.int64)
            theirs = want[name].numpy() if name in want else None
            if theirs is None or theirs.shape != ours.shape:
                size = ours.size
                checked, mismatches = checked + size, mismatches + size
                bad[name] = bad.get(name, 0) + size
                first = first or {"output": name, "reason": "missing or differently shaped in the integer model"}
                continue
            differ = ours != theirs
            count = int(differ.sum())
            checked, mismatches = checked + ours.size, mismatches + count
            if count:
                bad[name] = bad.get(name, 0) + count
                if first is None:
                    index = tuple(int(i) for i in np.argwhere(differ)[0])
                    first = {
                        "output": name,
                        "index": [start + index[0], *index[1:]],
                        "onnxruntime": int(ours[index]),
                        "integer": int(theirs[index]),
                    }
    return OnnxIntCheck(
        int(images.shape[0]), len(names), checked, mismatches, tuple(bad), first, time.perf_counter() - began
    )


@dataclass(frozen=True)
class QonnxCheck:
    """qonnx executor vs the fake-quant model: logit gaps, argmax agreement and whether they are in tolerance."""

    images: int
    max_abs_logit_gap: float
    mean_abs_logit_gap: float
    logit_scale: float
    argmax_agreement: float
    within_tolerance: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "max_abs_logit_gap": self.max_abs_logit_gap,
            "mean_abs_logit_gap": self.mean_abs_logit_gap,
            "logit_scale": self.logit_scale,
            "argmax_agreement": self.argmax_agreement,
            "tolerance": dict(QONNX_TOLERANCE),
            "within_tolerance": self.within_tolerance,
            "seconds": round(self.seconds, 3),
        }


def qonnx_cleaned(path: str | os.PathLike[str], batch: int = 1) -> Any:
    """The QONNX graph at ``path`` with a static batch of ``batch``, after qonnx's ``cleanup_model`` (shape
    inference, constant folding, unique names) — the form FINN and the executor read."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    return cleanup_model(ModelWrapper(proto))


def qonnx_logits(path: str | os.PathLike[str], images: torch.Tensor, batch: int = 100) -> np.ndarray:
    """Logits of the QONNX graph under qonnx's executor (float32), ``batch`` images per run."""
    from qonnx.core.onnx_exec import execute_onnx

    parts = []
    wrappers: dict[int, Any] = {}
    for start in range(0, images.shape[0], batch):
        chunk = images[start : start + batch].to(torch.float32).numpy()
        if chunk.shape[0] not in wrappers:
            wrappers[chunk.shape[0]] = qonnx_cleaned(path, chunk.shape[0])
        wrapper = wrappers[chunk.shape[0]]
        parts.append(execute_onnx(wrapper, {wrapper.graph.input[0].name: chunk})[wrapper.graph.output[0].name])
    return np.concatenate(parts)


def check_qonnx(path: str | os.PathLike[str], model: nn.Module, images: torch.Tensor) -> QonnxCheck:
    """Run the QONNX graph with qonnx's executor and compare its logits with the fake-quant model's."""
    import time

    began = time.perf_counter()
    ours = qonnx_logits(path, images).astype(np.float64)
    with torch.no_grad():
        theirs = model(images.to(torch.float32)).double().numpy()
    gaps = np.abs(ours - theirs)
    gap, mean_gap = float(gaps.max()), float(gaps.mean())
    scale = float(np.abs(theirs).max())
    agreement = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    tol = QONNX_TOLERANCE
    within = (
        gap <= tol["max_logit_gap"] * scale
        and mean_gap <= tol["mean_logit_gap"] * scale
        and agreement >= tol["argmax_agreement"]
    )
    return QonnxCheck(int(images.shape[0]), gap, mean_gap, scale, agreement, within, time.perf_counter() - began)


def qonnx_cost(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``qonnx.util.inference_cost`` of the QONNX graph at batch 1: MACs, BOPs and weight bits in total, the
    MAC count by (input, weight) data type, and the operators it could not price."""
    from qonnx.util.inference_cost import inference_cost

    total = inference_cost(qonnx_cleaned(path, 1), discount_sparsity=False)["total_cost"]
    return {
        "macs": total["total_macs"],
        "bops": total["total_bops"],
        "weight_bits": total["total_mem_w_bits"],
        "mac_types": {key.removeprefix("op_mac_"): value for key, value in total.items() if key.startswith("op_mac_")},
        "unsupported": sorted(eval_set(total.get("unsupported", ""))),
    }


def eval_set(text: Any) -> set[str]:
    """qonnx reports unsupported operators as the str() of a Python set; read the names back."""
    if isinstance(text, set):
        return text
    text = str(text).strip()
    if text in ("", "set()"):
        return set()
    return {part.strip().strip("'\"") for part in text.strip("{}").split(",") if part.strip()}


@dataclass(frozen=True)
class NpzCheck:
    """Every array the manifest names, read back from ``model.npz``, against the integer model it came from."""

    layers: int
    arrays: int
    checked: int
    mismatches: int
    mismatched_arrays: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "arrays": self.arrays,
            "checked": self.checked,
            "mismatches": self.mismatches,
            "mismatched_arrays": list(self.mismatched_arrays),
        }


def check_npz(path: str | os.PathLike[str], integer: IntegerModel, images: torch.Tensor | None = None) -> NpzCheck:
    """Read ``model.npz`` + ``manifest.json`` back and compare each array with the integer model's own tensor
    (weights, biases, dyadic factors, LayerNorm constants, embeddings). ``images`` is unused (the npz holds
    parameters, not a graph to run); it is accepted so every format's check has one signature."""
    import json

    folder = Path(path)
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "model.npz") as saved:
        arrays = {key: saved[key] for key in saved.files}
    gemms = integer.gemms()
    norms = {"norm": integer.norm}
    for block in integer.blocks:
        norms[block.norm1.name] = block.norm1
        norms[block.norm2.name] = block.norm2
    expected: dict[str, Any] = {"class_token": integer.class_token, "pos_embed": integer.pos_embed}
    for layer in manifest["layers"]:
        name, op = layer["name"], layer["op"]
        if op == "gemm":
            gemm = gemms[name]
            expected.update(
                {
                    layer["weight"]: gemm.weight_t.t(),
                    layer["bias"]: gemm.bias,
                    layer["mantissa"]: gemm.mantissa,
                    layer["shift"]: gemm.shift,
                }
            )
        elif op == "layernorm":
            norm = norms[name]
            expected.update({layer["mantissa"]: norm.mantissa, layer["shift"]: norm.shift, layer["bias"]: norm.bias})
    checked = mismatches = 0
    bad = []
    for key, value in expected.items():
        want = value.detach().cpu().numpy().astype(np.int64)
        got = arrays.get(key)
        if got is None or got.shape != want.shape:
            bad.append(key)
            checked, mismatches = checked + want.size, mismatches + want.size
            continue
        count = int((got.astype(np.int64) != want).sum())
        checked, mismatches = checked + want.size, mismatches + count
        if count:
            bad.append(key)
    return NpzCheck(len(manifest["layers"]), len(arrays), checked, mismatches, tuple(bad))
