"""The fake-quant model as a QONNX graph: float operators with a ``Quant`` node at every quantization point.

QONNX ``Quant`` (qonnx.custom_op.general.quant; inputs x, scale, zero point, bit width; attributes signed,
narrow, rounding_mode) computes y = scale·(clamp(round(x/scale + zp), qmin, qmax) − zp). mixbit's kinds map
onto it as follows:

- ``uniform`` weights (symmetric, per output channel): signed, narrow range, scale per output channel;
- ``uniform`` activations (per tensor, asymmetric): unsigned, zero point as calibrated;
- ``ptf`` / ``o2sf`` (per-channel power-of-two factors α_c, shared zero point): one ``Quant`` with the
  per-channel scale scale·2^α_c on the last axis — the same function, so faithful;
- ``log2``, ``twin_uniform`` and ``v2sf`` are not uniform grids with one step per channel; a single
  ``Quant`` cannot express them, so the export refuses them (``InputError`` naming the quantizer) —
  use ``onnx-int`` or ``npz`` for such plans.

Rounding: mixbit rounds half up (⌊t + 0.5⌋); QONNX's closest mode is ``HALF_UP`` (ties away from zero),
which differs only on exact negative ties. LayerNorm, softmax and GELU are the float ONNX operators
(``LayerNormalization``, ``Softmax``, ``Erf``), as the fake-quant model computes them in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from quant import primitives as P
from quant.errors import InputError
from quant.exports.graph import Graph

__all__ = ["QONNX_DOMAIN", "ROUNDING_MODE", "qonnx_model"]

QONNX_DOMAIN = "qonnx.custom_op.general"
ROUNDING_MODE = "HALF_UP"
OPSET = 17


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


class _Builder:
    def __init__(self, name: str) -> None:
        self.g = Graph(name)

    def f32(self, value: Any, name: str | None = None) -> str:
        return self.g.const(np.asarray(value, dtype=np.float32), np.float32, name=name)

    def i64(self, value: Any) -> str:
        return self.g.const(value, np.int64)

    def quant(
        self, x: str, quantizer: Any, name: str, *, channel_shape: tuple[int, ...] | None = None, fold: bool = False
    ) -> tuple[str, np.ndarray]:
        """A ``Quant`` node for a calibrated ``quant.modules.Quantizer`` named ``name``: (output, offset).

        ``channel_shape``: the shape a per-channel scale takes to broadcast against ``x`` (weights).
        ``fold``: for a GEMM input, move the zero point out of the ``Quant`` — the node quantizes x + zp·scale
        with zero point 0 (a QONNX scaled integer, typed for ``inference_cost``), and the consumer subtracts
        ``offset`` = zp·scale from its product, as an integer datapath does. Otherwise offset is 0.
        """
        if not quantizer.calibrated:
            raise InputError(f"{name}: not calibrated; run quant.calibrate_(model, data) before exporting")
        p = quantizer.qparams()
        scale = _np(p.scale).astype(np.float64)
        if p.kind in ("ptf", "o2sf"):
            scale = scale * np.exp2(_np(p.shift).astype(np.float64))  # per channel, last axis
        elif p.kind != "uniform":
            raise InputError(
                f"{name}: qonnx cannot express the {p.kind!r} quantizer (a QONNX Quant is one uniform grid per "
                "channel); export this plan as onnx-int or npz, or choose uniform, ptf or o2sf for this layer"
            )
        if channel_shape is not None and scale.ndim:
            scale = scale.reshape(channel_shape)
        zero_points = np.round(_np(p.zero_point).astype(np.float64)).reshape(-1)
        shared = bool(np.all(zero_points == zero_points[0]))
        zero_point = zero_points[0] if shared else zero_points.reshape(scale.shape)
        offset = np.zeros(())
        if fold and np.any(zero_point != 0) and channel_shape is None:
            offset = zero_point * scale
            x = self.g.op("Add", x, self.f32(offset), out=f"{name}.shifted")
            zero_point = np.zeros(())
        signed = bool(p.signed)
        narrow = signed  # symmetric weights use codes ±(2^(b−1) − 1)
        out = self.g.op(
            "Quant",
            x,
            self.f32(scale.astype(np.float32)),
            self.f32(np.asarray(zero_point, dtype=np.float32)),
            self.f32(float(p.bits)),
            out=f"{name}.out",
            domain=QONNX_DOMAIN,
            signed=int(signed),
            narrow=int(narrow),
            rounding_mode=ROUNDING_MODE,
        )
        return out, offset

    def linear(self, x: str, module: Any, name: str) -> str:
        """Quant(input) @ Quant(Wᵀ) + b; Wᵀ (K, N) is stored so ``MatMul`` reads a quantized initializer. The
        input's zero point is folded: x̂ = x' − o, so x̂·Ŵ + b = x'·Ŵ + (b − o·Ŵ)."""
        xq, offset = self.quant(x, module.input_quant, f"{name}.input_quant", fold=True)
        weight_t = _np(module.weight).T.astype(np.float32)
        wq, _ = self.quant(
            self.f32(weight_t, name=f"{name}.weight"),
            module.weight_quant,
            f"{name}.weight_quant",
            channel_shape=(1, -1),
        )
        y = self.g.op("MatMul", xq, wq, out=f"{name}.matmul")
        bias = _np(module.bias).astype(np.float64) if module.bias is not None else np.zeros(weight_t.shape[1])
        if np.any(offset != 0):
            w_hat = _np(P.fake_quantize(module.weight.detach().double(), module.weight_quant.qparams())).T
            bias = bias - np.broadcast_to(offset, (weight_t.shape[0],)) @ w_hat
        if module.bias is not None or np.any(bias != 0):
            y = self.g.op("Add", y, self.f32(bias, name=f"{name}.bias"), out=f"{name}.out")
        return y

    def act_matmul(self, a: str, b: str, mm: Any, name: str, transpose_b: bool) -> str:
        """â·b̂ (or â·b̂ᵀ) of two quantized activations with both zero points folded:
        (a' − α)(b' − β) summed over k = a'b' − β·Σa' − α·Σb' + K·α·β."""
        g = self.g
        aq, alpha = self.quant(a, mm.a_quant, f"{name}.a_quant", fold=True)
        bq, beta = self.quant(b, mm.b_quant, f"{name}.b_quant", fold=True)
        b_operand = g.op("Transpose", bq, perm=[0, 1, 3, 2]) if transpose_b else bq
        out = g.op("MatMul", aq, b_operand, out=name)
        alpha, beta = float(alpha), float(beta)
        if beta:
            a_sums = g.op("ReduceSum", aq, self.i64([-1]), keepdims=1)
            out = g.op("Sub", out, g.op("Mul", a_sums, self.f32(beta)))
        if alpha:
            b_sums = g.op("ReduceSum", bq, self.i64([-1 if transpose_b else -2]), keepdims=1)
            if transpose_b:
                b_sums = g.op("Transpose", b_sums, perm=[0, 1, 3, 2])
            out = g.op("Sub", out, g.op("Mul", b_sums, self.f32(alpha)))
        if alpha and beta:
            depth = g.op("Cast", g.op("Gather", g.op("Shape", aq), self.i64(-1), axis=0), to=TensorProto.FLOAT)
            out = g.op("Add", out, g.op("Mul", depth, self.f32(alpha * beta)))
        return out

    def layernorm(self, x: str, module: Any, name: str) -> str:
        channels = module.normalized_shape[-1]
        weight = _np(module.weight) if module.weight is not None else np.ones(channels)
        bias = _np(module.bias) if module.bias is not None else np.zeros(channels)
        return self.g.op(
            "LayerNormalization",
            x,
            self.f32(weight, name=f"{name}.weight"),
            self.f32(bias, name=f"{name}.bias"),
            axis=-1,
            epsilon=float(module.eps),
            out=f"{name}.out",
        )

    def gelu(self, x: str, name: str) -> str:
        g = self.g
        erf = g.op("Erf", g.op("Mul", x, self.f32(1 / math.sqrt(2.0))))
        return g.op("Mul", g.op("Mul", x, self.f32(0.5)), g.op("Add", erf, self.f32(1.0)), out=f"{name}.out")

    def block(self, block: Any, x: str, name: str, dim: int) -> str:
        g, attn, mlp = self.g, block.attn, block.mlp
        h = self.layernorm(x, block.norm1, f"{name}.norm1")
        qkv = self.linear(h, attn.qkv, f"{name}.attn.qkv")
        heads = attn.num_heads
        qkv = g.op("Reshape", qkv, self.i64([0, 0, 3, heads, dim // heads]))
        qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, self.i64(i), axis=0) for i in range(3))
        q = g.op("Mul", q, self.f32(float(attn.scale)))
        logits = self.act_matmul(q, k, attn.matmul_qk, f"{name}.attn.matmul_qk", transpose_b=True)
        probs = g.op("Softmax", logits, axis=-1, out=f"{name}.attn.softmax")
        mixed = self.act_matmul(probs, v, attn.matmul_av, f"{name}.attn.matmul_av", transpose_b=False)
        mixed = g.op("Reshape", g.op("Transpose", mixed, perm=[0, 2, 1, 3]), self.i64([0, 0, dim]))
        out = self.linear(mixed, attn.proj, f"{name}.attn.proj")
        x, _ = self.quant(g.op("Add", x, out), block.add1.output_quant, f"{name}.add1.output_quant")
        h = self.layernorm(x, block.norm2, f"{name}.norm2")
        h = self.linear(h, mlp.fc1, f"{name}.mlp.fc1")
        h = self.gelu(h, f"{name}.mlp.act")
        out = self.linear(h, mlp.fc2, f"{name}.mlp.fc2")
        return self.quant(g.op("Add", x, out), block.add2.output_quant, f"{name}.add2.output_quant")[0]

    def build(self, model: Any, image_shape: tuple[int, int, int]) -> onnx.ModelProto:
        g = self.g
        channels, height, width = image_shape
        proj = model.patch_embed.proj
        images = g.add_input("images", TensorProto.FLOAT, ["batch", *image_shape])
        xq, offset = self.quant(images, proj.input_quant, "patch_embed.proj.input_quant", fold=True)
        weight = _np(proj.weight).astype(np.float32)
        wq, _ = self.quant(
            self.f32(weight, name="patch_embed.proj.weight"),
            proj.weight_quant,
            "patch_embed.proj.weight_quant",
            channel_shape=(-1, 1, 1, 1),
        )
        bias = _np(proj.bias).astype(np.float64) if proj.bias is not None else np.zeros(weight.shape[0])
        if np.any(offset != 0):  # stride = kernel, no padding: every output sums the whole kernel once
            if np.ndim(offset):
                raise InputError(
                    "patch_embed.proj.input_quant: a per-channel image quantizer cannot be exported to qonnx"
                )
            w_hat = _np(P.fake_quantize(proj.weight.detach().double(), proj.weight_quant.qparams()))
            bias = bias - float(offset) * w_hat.reshape(w_hat.shape[0], -1).sum(axis=1)
        conv_inputs = [xq, wq, self.f32(bias, name="patch_embed.proj.bias")]
        kh, kw = proj.kernel_size
        y = g.op("Conv", *conv_inputs, kernel_shape=[kh, kw], strides=[kh, kw], out="patch_embed.proj.out")
        dim = weight.shape[0]
        tokens = g.op("Transpose", g.op("Reshape", y, self.i64([0, dim, -1])), perm=[0, 2, 1])
        batch = g.op("Slice", g.op("Shape", tokens), self.i64([0]), self.i64([1]))
        cls = g.op(
            "Expand",
            self.f32(_np(model.cls_token), name="cls_token"),
            g.op("Concat", batch, self.i64([1, dim]), axis=0),
        )
        tokens = g.op("Concat", cls, tokens, axis=1)
        tokens = g.op("Add", tokens, self.f32(_np(model.pos_embed), name="pos_embed"))
        x, _ = self.quant(tokens, model.pos_add.output_quant, "pos_add.output_quant")
        for index, block in enumerate(model.blocks):
            x = self.block(block, x, f"blocks.{index}", dim)
        x = self.layernorm(x, model.norm, "norm")
        pooled = g.op("Gather", x, self.i64(0), axis=1)
        logits = self.linear(pooled, model.head, "head")
        g.add_output(logits, "logits", TensorProto.FLOAT)
        del channels, height, width
        return g.model(OPSET, domains=[(QONNX_DOMAIN, 1)], doc="mixbit fake-quant ViT (QONNX Quant nodes)")


def qonnx_model(model: Any, image_shape: tuple[int, int, int], name: str = "mixbit_qonnx") -> onnx.ModelProto:
    """The QONNX graph of a quantized, calibrated timm ViT (the structure ``quant.to_integer`` accepts)."""
    from quant.integer import to_integer

    to_integer(model)  # the same structural checks as the integer model (class token, no LayerScale, ...)
    return _Builder(name).build(model, image_shape)
