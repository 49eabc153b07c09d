"""The integer model as arrays (``model.npz``) and a JSON manifest (``manifest.json``): what an HLS or RTL
writer needs, with nothing to recompute.

``model.npz`` holds integer arrays only, keyed ``<layer>.<field>``. ``manifest.json``::

    {"format": "mixbit-int", "version": 1, "model": "mixbit_vit_digits",
     "input": {"shape": [C, H, W], "encode": {quantizer}},           # the one float -> int step
     "number_formats": {"act_frac_bits": 16, "ln_frac_bits": 12, ...},
     "widths": {"accumulator_bits": 32, "activation_bits": 32},
     "constants": {"class_token": "class_token", "pos_embed": "pos_embed"},   # npz keys, fixed point
     "layers": [ {layer}, ... ]}                                      # in forward (graph) order

Each ``{layer}`` has ``index`` (its place in the graph), ``name``, ``op`` and ``inputs`` (names of the
layers — or ``images`` — whose outputs it reads), and per op:

- ``gemm`` (patch embedding, qkv, proj, fc1, fc2, head): ``weight_bits``, ``act_bits``, ``acc_bits``
  (worst-case accumulator width, sign included), ``input_quant`` (a ``{quantizer}``), arrays ``weight``
  (N×K integers, per-output-channel symmetric codes), ``bias`` (fixed point, 2^−act_frac_bits),
  ``mantissa`` and ``shift`` (per output channel): out = ((acc·mantissa + 2^(shift−1)) >> shift) + bias;
  ``kernel`` [kh, kw] for the patch embedding (input patches in (C, kh, kw) order).
- ``matmul`` (q·kᵀ, attention·v): ``a_quant``, ``b_quant``, ``transpose_b``, ``acc_bits``, ``mantissa``,
  ``shift`` (scalars), and ``q_scale`` [mantissa, shift] when q is scaled by a non-power-of-two first.
- ``layernorm``: ``eps_codes``, ``preshift`` (input integers are shifted left by it), arrays
  ``mantissa``, ``shift``, ``bias`` (the affine γ, β as per-channel requantization and offset).
- ``softmax`` (Shiftmax), ``gelu`` (ShiftGELU): no parameters; the number formats say it all (GELU rounds its
  fixed-point input right by ``gelu_input_shift`` to ``gelu_frac_bits`` fraction bits, computes x·σ(1.702x) in
  units of 2^−2·gelu_frac_bits, and rounds that back to ``act_frac_bits``).
- ``add`` (residual add, ``pos_add``): ``output_quant``; the residual operand is the stream's codes brought
  to fixed point by ``stream_mantissa``/``stream_shift``.

A ``{quantizer}``: ``kind``, ``bits``, ``signed``, ``scale`` (list of floats, one per channel or one),
``zero_point``, ``shift`` (power-of-two factors) — the ``quant.primitives`` parameters — and the encoder's
integer form from fixed point: arrays ``<prefix>.fine_mantissa``, ``.fine_shift``, ``.coarse_shift``,
``.log2_thresholds`` (see ``quant.integer.IntEncoder``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quant import intops
from quant.integer import ACT_FRAC_BITS, GELU_SHIFT, IntegerModel, IntEncoder, IntGemm, IntMatMul
from quant.primitives import QParams

__all__ = ["MANIFEST_VERSION", "npz_arrays"]

MANIFEST_VERSION = 1


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _list(t: Any) -> list[float]:
    return [float(v) for v in np.asarray(_np(t), dtype=np.float64).reshape(-1)]


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.layers: list[dict[str, Any]] = []

    def array(self, key: str, value: Any, dtype: Any = np.int64) -> str:
        self.arrays[key] = np.asarray(_np(value), dtype=dtype)
        return key

    def quantizer(self, prefix: str, params: QParams, encoder: IntEncoder | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": params.kind,
            "bits": params.bits,
            "signed": bool(params.signed),
            "code_range": list(params.code_range),
            "scale": _list(params.scale),
            "zero_point": [round(v) for v in _list(params.zero_point)],
            "shift": [int(v) for v in _list(params.shift)],
        }
        if encoder is not None:
            entry["encoder"] = {
                "frac_bits": encoder.frac_bits,
                "fine_mantissa": self.array(f"{prefix}.fine_mantissa", encoder.fine_mantissa),
                "fine_shift": self.array(f"{prefix}.fine_shift", encoder.fine_shift),
                "coarse_shift": self.array(f"{prefix}.coarse_shift", encoder.coarse_shift),
                "log2_thresholds": self.array(f"{prefix}.log2_thresholds", encoder.log2_thresholds),
            }
        return entry

    def add_layer(self, entry: dict[str, Any]) -> str:
        entry = {"index": len(self.layers), **entry}
        self.layers.append(entry)
        return entry["name"]

    def gemm(self, gemm: IntGemm, source: str, encoder: bool = True) -> str:
        weight = _np(gemm.weight_t).T
        bound = int(np.abs(weight).max()) if weight.size else 0
        stored = np.int8 if bound <= 127 else np.int16 if bound <= 32767 else np.int32
        entry: dict[str, Any] = {
            "name": gemm.name,
            "op": "gemm",
            "inputs": [source],
            "weight_bits": gemm.weight_bits,
            "act_bits": gemm.input_params.bits,
            "acc_bits": gemm.acc_bits,
            "input_quant": self.quantizer(
                f"{gemm.name}.input_quant", gemm.input_params, gemm.encoder if encoder else None
            ),
            "weight": self.array(f"{gemm.name}.weight", weight, stored),
            "bias": self.array(f"{gemm.name}.bias", gemm.bias),
            "mantissa": self.array(f"{gemm.name}.mantissa", gemm.mantissa),
            "shift": self.array(f"{gemm.name}.shift", gemm.shift),
        }
        if gemm.kernel is not None:
            entry["kernel"] = list(gemm.kernel)
        return self.add_layer(entry)

    def matmul(self, mm: IntMatMul, a: str, b: str, q_scale: tuple[int, int] | None) -> str:
        entry = {
            "name": mm.name,
            "op": "matmul",
            "inputs": [a, b],
            "a_quant": self.quantizer(f"{mm.name}.a_quant", mm.a_params, mm.a_encoder),
            "b_quant": self.quantizer(f"{mm.name}.b_quant", mm.b_params, mm.b_encoder),
            "transpose_b": bool(mm.transpose_b),
            "acc_bits": mm.acc_bits,
            "mantissa": int(mm.mantissa),
            "shift": int(mm.shift),
        }
        if q_scale is not None:
            entry["q_scale"] = [int(q_scale[0]), int(q_scale[1])]
        return self.add_layer(entry)

    def layernorm(self, norm: Any, source: str) -> str:
        return self.add_layer(
            {
                "name": norm.name,
                "op": "layernorm",
                "inputs": [source],
                "eps_codes": int(norm.eps_codes),
                "preshift": int(norm.preshift),
                "mantissa": self.array(f"{norm.name}.mantissa", norm.mantissa),
                "shift": self.array(f"{norm.name}.shift", norm.shift),
                "bias": self.array(f"{norm.name}.bias", norm.bias),
            }
        )

    def add(self, add: Any, inputs: list[str], stream: Any | None) -> str:
        entry: dict[str, Any] = {
            "name": add.name,
            "op": "add",
            "inputs": inputs,
            "output_quant": self.quantizer(f"{add.name}.output_quant", add.params, add.encoder),
        }
        if stream is not None:
            entry["stream_mantissa"], entry["stream_shift"] = int(stream.mantissa), int(stream.shift)
        return self.add_layer(entry)


def npz_arrays(
    integer: IntegerModel, model_name: str, image_shape: tuple[int, int, int], widths: dict[str, int]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays for ``model.npz``, the manifest) of an integer model."""
    w = _Writer()
    image_encode = w.quantizer("images", integer.image_params, None)
    source = w.gemm(integer.patch_embed, "images", encoder=False)
    w.array("class_token", integer.class_token)
    w.array("pos_embed", integer.pos_embed)
    stream = w.add(integer.pos_add, [source, "pos_embed"], None)
    for block in integer.blocks:
        x = w.layernorm(block.norm1, stream)
        qkv = w.gemm(block.qkv, x)
        scores = w.matmul(block.matmul_qk, qkv, qkv, block.q_scale)
        probs = w.add_layer({"name": f"{block.name}.attn.softmax", "op": "softmax", "inputs": [scores]})
        mixed = w.matmul(block.matmul_av, probs, qkv, None)
        out = w.gemm(block.proj, mixed)
        stream = w.add(block.add1, [stream, out], block.stream_in)
        x = w.layernorm(block.norm2, stream)
        hidden = w.gemm(block.fc1, x)
        act = w.add_layer({"name": f"{block.name}.mlp.act", "op": "gelu", "inputs": [hidden]})
        out = w.gemm(block.fc2, act)
        stream = w.add(block.add2, [stream, out], block.stream_mid)
    x = w.layernorm(integer.norm, stream)
    w.gemm(integer.head, x)
    manifest = {
        "format": "mixbit-int",
        "version": MANIFEST_VERSION,
        "model": model_name,
        "input": {"shape": list(image_shape), "encode": image_encode},
        "number_formats": {
            "act_frac_bits": ACT_FRAC_BITS,
            "ln_frac_bits": intops.LN_FRAC_BITS,
            "ln_reciprocal_bits": intops.LN_RECIPROCAL_BITS,
            "logit_frac_bits": ACT_FRAC_BITS,
            "exp_frac_bits": intops.EXP_FRAC_BITS,
            "prob_frac_bits": intops.PROB_FRAC_BITS,
            "softmax_reciprocal_bits": intops.SOFTMAX_RECIPROCAL_BITS,
            "gelu_frac_bits": intops.GELU_FRAC_BITS,
            "gelu_input_shift": GELU_SHIFT,
            "rounding": "half_up: (x + 2^(s-1)) >> s",
        },
        "widths": dict(widths),
        "constants": {"class_token": "class_token", "pos_embed": "pos_embed"},
        "heads": integer.blocks[0].num_heads if integer.blocks else 0,
        "layers": w.layers,
    }
    return w.arrays, manifest
