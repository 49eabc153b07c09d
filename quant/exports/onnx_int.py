"""The integer-only model (``quant.integer.IntegerModel``) as a standard ONNX graph that onnxruntime runs.

Every step of :meth:`IntegerModel.run` becomes ONNX integer operators (``quant.exports.graph``): encoders,
decoders, GEMMs, dyadic requantization (multiply, add 2^(s−1), shift), Shiftmax, ShiftGELU and I-LayerNorm
with its Newton square root. The graph's one float step is the image entering the patch embedding,
encoded by its input quantizer in float32 exactly as ``IntegerModel.encode_images`` does.

Widths: arithmetic runs on int64 tensors; what a datapath stores is cast to its width — each quantization
point's codes to int8/uint8 (the graph outputs), GEMM operands and accumulators to int32 where the
worst-case accumulator fits in 32 bits, the logits to int32. The integer model checks (as it runs) that
every one of these values fits its width, so the casts lose nothing.

Outputs: ``logits`` (int32, fixed point with 16 fraction bits) and one output per quantization point,
named as ``IntegerRun.codes`` names them (``blocks.0.attn.qkv.input_quant`` ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from quant import intops
from quant.errors import InputError
from quant.exports.graph import MAX_SHIFT, Graph, IntOps
from quant.integer import (
    ACT_FRAC_BITS,
    GELU_SHIFT,
    IntAdd,
    IntBlock,
    IntegerModel,
    IntEncoder,
    IntGemm,
    IntLayerNorm,
    IntMatMul,
    StreamToFixed,
)
from quant.primitives import QParams, log2_zero_code

__all__ = ["ISQRT_ITERATIONS", "OPSET", "code_dtype", "onnx_int_model"]

OPSET = 17
ISQRT_ITERATIONS = 8
"""Newton steps unrolled for ⌊√x⌋: from a start within 2× of √x, 6 reach ⌊√x⌋ for every x < 2^63 (tested
against ``intops.isqrt``); extra steps keep the answer."""
_SATURATE = (1 << 31) - 1


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def code_dtype(params: QParams) -> tuple[np.dtype, int]:
    """The narrowest numpy dtype (and its ONNX type) that holds every code of ``params``."""
    low, high = params.code_range
    if low >= 0 and high <= 255:
        return np.dtype(np.uint8), TensorProto.UINT8
    if low >= -128 and high <= 127:
        return np.dtype(np.int8), TensorProto.INT8
    return np.dtype(np.int32), TensorProto.INT32


def _check_shifts(name: str, *shifts: Any) -> None:
    for shift in shifts:
        values = np.asarray(_np(shift))
        if values.size and int(values.max()) > MAX_SHIFT:
            raise InputError(f"{name}: a requantization shift of {int(values.max())} exceeds {MAX_SHIFT} bits")


class _Builder:
    def __init__(self, integer: IntegerModel, name: str) -> None:
        self.model = integer
        self.g = Graph(name)
        self.ops = IntOps(self.g)
        self.points: list[tuple[str, str, int]] = []  # (graph tensor, output name, onnx type)

    # -- pieces -----------------------------------------------------------------------------------------
    def point(self, name: str, codes: str, params: QParams) -> None:
        _, elem = code_dtype(params)
        self.points.append((self.ops.cast(codes, elem), name, elem))

    def encode(self, x: str, encoder: IntEncoder, name: str) -> str:
        """``IntEncoder.__call__``: fixed-point int64 -> codes (int64)."""
        o, p = self.ops, encoder.params
        if p.kind == "log2":
            below = self.g.op(
                "LessOrEqual", self.g.op("Unsqueeze", x, o.i64([-1])), o.i64(_np(encoder.log2_thresholds))
            )
            return self.g.op("ReduceSum", o.cast(below, TensorProto.INT64), o.i64([-1]), keepdims=0)
        _check_shifts(name, encoder.fine_shift, encoder.coarse_shift)
        x = o.clamp(x, -_SATURATE, _SATURATE)
        mantissa, fine_shift = _np(encoder.fine_mantissa), _np(encoder.fine_shift)
        zero_point = o.i64(_np(encoder.zero_point))
        bits = p.bits
        if p.kind == "uniform":
            qmin, qmax = p.code_range
            return o.clamp(o.add(o.requantize(x, mantissa, fine_shift), zero_point), qmin, qmax)
        if p.kind in ("ptf", "o2sf"):
            return o.clamp(o.add(o.requantize(x, mantissa, fine_shift), zero_point), 0, 2**bits - 1)
        half = 2 ** (bits - 1)
        coarse_shift = _np(encoder.coarse_shift)
        fine = o.requantize(x, mantissa, fine_shift)
        coarse = o.requantize(x, mantissa, coarse_shift)
        if p.signed and p.kind == "twin_uniform":
            negative = o.clamp(o.requantize(self.g.op("Neg", x), mantissa, fine_shift), 0, half - 1)
            positive = o.add(o.clamp(coarse, 0, half - 1), o.i64(half))
            return o.where(self.g.op("Less", x, o.i64(0)), negative, positive)
        if p.signed:  # v2sf, two's complement field
            lo, hi = -(2 ** (bits - 2)), 2 ** (bits - 2) - 1
            use_fine = self.g.op(
                "And", self.g.op("GreaterOrEqual", fine, o.i64(lo)), self.g.op("LessOrEqual", fine, o.i64(hi))
            )
            field = o.where(use_fine, fine, o.clamp(coarse, lo, hi))
            wrapped = o.where(self.g.op("Less", field, o.i64(0)), o.add(field, o.i64(half)), field)
            return o.add(wrapped, o.where(use_fine, o.i64(0), o.i64(half)))
        fine = o.clamp(fine, low=0)
        use_fine = self.g.op("LessOrEqual", fine, o.i64(half - 1))
        field = o.where(use_fine, fine, o.clamp(coarse, 0, half - 1))
        return o.add(field, o.where(use_fine, o.i64(0), o.i64(half)))

    def decode(self, codes: str, p: QParams) -> str:
        """``quant.primitives.decode_int`` (per-channel factors on the last axis)."""
        o = self.ops
        zero_point = o.i64(np.round(_np(p.zero_point).astype(np.float64)).astype(np.int64))
        shift = np.round(_np(p.shift).astype(np.float64)).astype(np.int64)
        if p.kind == "uniform":
            return o.sub(codes, zero_point)
        if p.kind in ("ptf", "o2sf"):
            return o.mul(o.sub(codes, zero_point), o.i64(np.left_shift(np.int64(1), shift)))
        if p.kind == "log2":
            zero = log2_zero_code(p.bits)
            n = o.pow2(o.clamp(o.sub(o.i64(zero - 1), codes), low=0))
            return o.where(self.g.op("GreaterOrEqual", codes, o.i64(zero)), o.i64(0), n)
        half = 2 ** (p.bits - 1)
        h = o.div_nonneg(codes, o.i64(half))
        field = self.g.op("Mod", codes, o.i64(half), fmod=0)
        if p.signed and p.kind == "twin_uniform":
            coarse = o.mul(field, o.i64(np.left_shift(np.int64(1), shift)))
            return o.where(self.g.op("Greater", h, o.i64(0)), coarse, self.g.op("Neg", field))
        if p.signed:
            field = o.where(self.g.op("GreaterOrEqual", field, o.i64(half // 2)), o.sub(field, o.i64(half)), field)
        return o.mul(field, o.pow2(o.mul(h, o.i64(shift))))

    def matmul(self, a: str, b: str, acc_bits: int) -> str:
        """``intops.int_gemm``: int32 operands and accumulator where the worst case fits 32 bits."""
        o = self.ops
        if acc_bits <= 32:
            a32, b32 = o.cast(a, TensorProto.INT32), o.cast(b, TensorProto.INT32)
            return o.cast(self.g.op("MatMul", a32, b32), TensorProto.INT64)
        return self.g.op("MatMul", a, b)

    def gemm(self, x_codes: str, gemm: IntGemm) -> str:
        """Accumulate and requantize a weight GEMM (codes in, fixed point out)."""
        o = self.ops
        _check_shifts(gemm.name, gemm.shift)
        weight = _np(gemm.weight_t)
        bound = int(np.abs(weight).max()) if weight.size else 0
        stored = np.int8 if bound <= 127 else np.int16 if bound <= 32767 else np.int32
        w = o.cast(self.g.const(weight.astype(stored), stored, name=f"{gemm.name}.weight_int"), TensorProto.INT64)
        acc = self.matmul(self.decode(x_codes, gemm.input_params), w, gemm.acc_bits)
        out = o.requantize(acc, _np(gemm.mantissa), _np(gemm.shift))
        return o.add(out, self.g.const(_np(gemm.bias), np.int64, name=f"{gemm.name}.bias_fixed"))

    def linear(self, x: str, gemm: IntGemm) -> str:
        codes = self.encode(x, gemm.encoder, gemm.name)
        self.point(gemm.input_name, codes, gemm.input_params)
        return self.gemm(codes, gemm)

    def layernorm(self, n: str, norm: IntLayerNorm, channels: int) -> str:
        o = self.ops
        _check_shifts(norm.name, norm.shift)
        normed = o.int_layernorm(
            o.shift_left(n, norm.preshift),
            channels,
            norm.eps_codes,
            intops.LN_FRAC_BITS,
            intops.LN_RECIPROCAL_BITS,
            ISQRT_ITERATIONS,
        )
        return o.add(o.requantize(normed, _np(norm.mantissa), _np(norm.shift)), o.i64(_np(norm.bias)))

    def stream_to_fixed(self, codes: str, convert: StreamToFixed) -> str:
        return self.ops.requantize(self.decode(codes, convert.params), convert.mantissa, convert.shift)

    def residual_add(self, a: str, b: str, add: IntAdd, name: str) -> str:
        codes = self.encode(self.ops.add(a, b), add.encoder, name)
        self.point(f"{name}.output_quant", codes, add.params)
        return codes

    def attention_matmul(self, a: str, b: str, mm: IntMatMul) -> str:
        o = self.ops
        _check_shifts(mm.name, mm.shift)
        a_codes, b_codes = self.encode(a, mm.a_encoder, mm.name), self.encode(b, mm.b_encoder, mm.name)
        self.point(f"{mm.name}.a_quant", a_codes, mm.a_params)
        self.point(f"{mm.name}.b_quant", b_codes, mm.b_params)
        a_int, b_int = self.decode(a_codes, mm.a_params), self.decode(b_codes, mm.b_params)
        if mm.transpose_b:
            b_int = self.g.op("Transpose", b_int, perm=[0, 1, 3, 2])
        return o.requantize(self.matmul(a_int, b_int, mm.acc_bits), _np(mm.mantissa), _np(mm.shift))

    # -- the model --------------------------------------------------------------------------------------
    def images(self, image_shape: tuple[int, int, int]) -> str:
        """Float32 images -> image codes (int64): the graph's only float step, as ``P.encode`` does it."""
        p = self.model.image_params
        if p.kind != "uniform" or p.scale.dim() > 0:
            raise InputError(
                f"patch_embed.proj.input_quant: the image quantizer is {p.kind!r}"
                f"{' per channel' if p.scale.dim() else ''}; onnx-int encodes images with a per-tensor uniform one"
            )
        g, o = self.g, self.ops
        images = g.add_input("images", TensorProto.FLOAT, ["batch", *image_shape])
        scale = g.const(_np(p.scale).astype(np.float32), np.float32)
        t = g.op("Floor", g.op("Add", g.op("Div", images, scale), g.const(0.5, np.float32)))
        qmin, qmax = p.code_range
        t = g.op("Add", t, g.const(_np(p.zero_point).astype(np.float32), np.float32))
        t = g.op("Clip", t, g.const(float(qmin), np.float32), g.const(float(qmax), np.float32))
        return o.cast(t, TensorProto.INT64)

    def build(self, image_shape: tuple[int, int, int]) -> onnx.ModelProto:
        m, g, o = self.model, self.g, self.ops
        channels, height, width = image_shape
        kh, kw = m.patch_embed.kernel  # type: ignore[misc]
        if height % kh or width % kw:
            raise InputError(f"image {height}x{width} is not a whole number of {kh}x{kw} patches")
        image_codes = self.images(image_shape)
        self.point("patch_embed.proj.input_quant", image_codes, m.image_params)
        grid = g.op("Reshape", image_codes, o.i64([0, channels, height // kh, kh, width // kw, kw]))
        grid = g.op("Transpose", grid, perm=[0, 2, 4, 1, 3, 5])
        patches = g.op("Reshape", grid, o.i64([0, (height // kh) * (width // kw), channels * kh * kw]))
        tokens = self.gemm(patches, m.patch_embed)
        dim = int(m.class_token.shape[-1])
        batch = g.op("Slice", g.op("Shape", tokens), o.i64([0]), o.i64([1]))
        prefix = g.op("Expand", o.i64(_np(m.class_token)), g.op("Concat", batch, o.i64([1, dim]), axis=0))
        tokens = g.op("Concat", prefix, tokens, axis=1)
        pos = g.const(_np(m.pos_embed), np.int64, name="pos_embed_fixed")
        stream = self.residual_add(tokens, pos, m.pos_add, "pos_add")
        for block in m.blocks:
            stream = self.block(block, stream, dim)
        normed = self.layernorm(self.decode(stream, m.stream_out.params), m.norm, dim)
        pooled = g.op("Gather", normed, o.i64(0), axis=1)
        logits = self.linear(pooled, m.head)
        g.add_output(o.cast(logits, TensorProto.INT32), "logits", TensorProto.INT32)
        for tensor, name, elem in self.points:
            g.add_output(tensor, name, elem)
        doc = (
            "mixbit integer-only ViT. Input: float32 images (N, C, H, W). Outputs: int32 logits, fixed point "
            f"with {ACT_FRAC_BITS} fraction bits, and the codes of every quantization point."
        )
        return g.model(OPSET, doc=doc)

    def block(self, block: IntBlock, stream: str, dim: int) -> str:
        g, o, n = self.g, self.ops, block.name
        x = self.layernorm(self.decode(stream, block.stream_in.params), block.norm1, dim)
        qkv = self.linear(x, block.qkv)
        heads = block.num_heads
        qkv = g.op("Reshape", qkv, o.i64([0, 0, 3, heads, dim // heads]))
        qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, o.i64(i), axis=0) for i in range(3))
        if block.q_scale is not None:
            q = o.requantize(q, block.q_scale[0], block.q_scale[1])
        logits = self.attention_matmul(q, k, block.matmul_qk)
        probs = o.shiftmax(
            logits, ACT_FRAC_BITS, intops.EXP_FRAC_BITS, intops.PROB_FRAC_BITS, intops.SOFTMAX_RECIPROCAL_BITS
        )
        mixed = self.attention_matmul(probs, v, block.matmul_av)
        mixed = g.op("Reshape", g.op("Transpose", mixed, perm=[0, 2, 1, 3]), o.i64([0, 0, dim]))
        out = self.linear(mixed, block.proj)
        residual = self.stream_to_fixed(stream, block.stream_in)
        stream = self.residual_add(residual, out, block.add1, f"{n}.add1")
        x = self.layernorm(self.decode(stream, block.stream_mid.params), block.norm2, dim)
        hidden = self.linear(x, block.fc1)
        gelu = o.shift_gelu(o.shift_round(hidden, GELU_SHIFT), intops.GELU_FRAC_BITS, intops.EXP_FRAC_BITS)
        hidden = o.shift_round(gelu, 2 * intops.GELU_FRAC_BITS - ACT_FRAC_BITS)
        out = self.linear(hidden, block.fc2)
        residual = self.stream_to_fixed(stream, block.stream_mid)
        return self.residual_add(residual, out, block.add2, f"{n}.add2")


def onnx_int_model(
    integer: IntegerModel, image_shape: tuple[int, int, int], name: str = "mixbit_int"
) -> onnx.ModelProto:
    """The ONNX graph of ``integer`` for images of ``image_shape`` (C, H, W); checked by ``onnx.checker``."""
    model = _Builder(integer, name).build(image_shape)
    onnx.checker.check_model(model)
    return model
