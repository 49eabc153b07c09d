"""Integer-only inference of a quantized timm ViT (its check against the exact mode is ``quant.verify``).

Number formats inside the integer model (every tensor is ``int64``; no float after the input boundary):

- **codes** of a quantizer (``quant.primitives.QParams``) at every quantization point of the fake-quant
  model; a GEMM multiplies ``decode_int(codes)`` (integers on the quantizer's grid), never the codes.
- **fixed point** with ``ACT_FRAC_BITS`` fraction bits for every activation the fake-quant model keeps in
  float: GEMM outputs (after bias), the residual stream, the LayerNorm input, the GELU input. A GEMM's
  accumulator is requantized into it by a dyadic factor per output channel; the residual add is then a
  plain integer add of two tensors on the same grid (the add's requantization is the GEMM's).
  On hardware this is an int32 with 16 fraction bits while |x| < 2^15; here int64 holds it and every tensor is
  checked against the width its datapath gives it (``Widths``), the nonlinear operators' intermediates included.
- **integer logits**: the head's output in fixed point, so ``argmax`` is the prediction.

The only float→int step is the image entering the patch embedding: ``quant.primitives.encode`` of its
input quantizer, stated once in :meth:`IntegerModel.forward`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from quant import intops
from quant import primitives as P
from quant.errors import InputError
from quant.modules import QuantAdd, QuantConv2d, QuantGELU, QuantLayerNorm, QuantLinear
from quant.primitives import QParams, log2_zero_code
from quant.tokens import TokenSplit

__all__ = [
    "ACT_FRAC_BITS",
    "FixedScale",
    "IntAdd",
    "IntEncoder",
    "IntGemm",
    "IntLayerNorm",
    "IntMatMul",
    "IntegerModel",
    "WidthError",
    "Widths",
    "check_width",
    "decoded_bound",
    "fixed_mean",
    "integer_unsupported",
    "to_fixed",
    "to_integer",
]

ACT_FRAC_BITS = 16
"""Fraction bits of the fixed-point activations (GEMM outputs, residual stream): one LSB is 2^−16."""
_SATURATE = (1 << 31) - 1  # fixed-point values are saturated to int32 before a dyadic multiply (int64-safe)


class WidthError(InputError):
    """A tensor of the integer model left the width its datapath gives it (names the layer and the tensor)."""


@dataclass(frozen=True)
class Widths:
    """Bits (sign included) a hardware datapath gives each tensor; the integer model checks them as it runs.

    ``accumulator_bits``: GEMM accumulators — one width, or a width per GEMM name (what the PE model says:
    ``sim.resources.pe_accumulator_bits`` of the layer's bit pair, at most 32); GEMMs a mapping leaves out get
    32. ``activation_bits``: every fixed-point tensor between the GEMMs (GEMM outputs after requantization
    and bias, residual operands and sums, LayerNorm, softmax and GELU outputs, attention logits, the model's
    logits), an int32 with ``ACT_FRAC_BITS`` fraction bits by default. ``nonlinear_bits``: every intermediate
    inside Shiftmax, ShiftGELU and I-LayerNorm (exponentials, sums, reciprocals, products; 32 bits, as I-ViT's
    integer-only datapath), except the LayerNorm's row statistics Σ(x − μ)² and the variance
    (``intops.ROW_STATISTICS``), which get ``statistics_bits`` (48: the DSP48E2 accumulator, UG579, that FPGA
    designs sum them in). Quantizer codes are clamped to their bits by construction. ``check=False`` turns the
    checks off.
    """

    accumulator_bits: int | Mapping[str, int] = 32
    activation_bits: int = 32
    nonlinear_bits: int = 32
    statistics_bits: int = 48
    check: bool = True

    def __post_init__(self) -> None:
        acc = self.accumulator_bits
        others = (self.activation_bits, self.nonlinear_bits, self.statistics_bits)
        for bits in (*(acc.values() if isinstance(acc, Mapping) else [acc]), *others):
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 64:
                raise InputError(f"widths: a width must be an integer number of bits from 2 to 64, got {bits!r}")

    def accumulator(self, layer: str) -> int:
        """Bits of GEMM ``layer``'s accumulator (``<layer>.low``, a token split's low group, gets the layer's)."""
        if isinstance(self.accumulator_bits, Mapping):
            return int(self.accumulator_bits.get(layer.removesuffix(".low"), 32))
        return self.accumulator_bits

    def to_json(self) -> dict[str, Any]:
        acc = dict(self.accumulator_bits) if isinstance(self.accumulator_bits, Mapping) else self.accumulator_bits
        return {
            "accumulator_bits": acc,
            "activation_bits": self.activation_bits,
            "nonlinear_bits": self.nonlinear_bits,
            "statistics_bits": self.statistics_bits,
            "check": self.check,
        }

    def observer(self, op: str) -> intops.Observer | None:
        """What checks the intermediates of the nonlinear operator named ``op`` (None when checks are off)."""
        if not self.check:
            return None

        def observe(part: str, value: Tensor) -> None:
            bits = self.statistics_bits if part in intops.ROW_STATISTICS else self.nonlinear_bits
            check_width(f"{op}.{part}", value, bits, "intermediate")

        return observe


_CODE_SUFFIXES = (".input_quant", ".a_quant", ".b_quant", ".output_quant", ".patches", ".input_quant.low")


def check_width(name: str, value: Tensor, bits: int, role: str) -> None:
    """Raise ``WidthError`` if any element of ``value`` lies outside the signed ``bits``-bit range."""
    if value.numel() == 0:
        return
    low, high = int(value.min()), int(value.max())
    limit = 1 << (bits - 1)
    if low < -limit or high > limit - 1:
        worst = max(abs(low), abs(high))
        layer, _, tensor = name.rpartition(".")
        raise WidthError(
            f"{layer or name}: {role} {tensor!r} ({name}) overflows its {bits}-bit width: values reach "
            f"{low}..{high} (|x| ≈ 2^{math.log2(worst):.1f}, allowed -2^{bits - 1}..2^{bits - 1}-1)"
        )


def to_fixed(values: Tensor, frac_bits: int = ACT_FRAC_BITS) -> Tensor:
    """Round real constants (float64) to fixed point: ⌊v·2^frac_bits + 0.5⌋ as int64. Conversion time only."""
    return torch.floor(values.to(torch.float64) * 2.0**frac_bits + 0.5).to(torch.int64)


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """A 0-d tensor as is; a per-channel (last axis) tensor shaped to broadcast against ``ndim`` dimensions."""
    return t if t.dim() == 0 else t.reshape([1] * (ndim - 1) + [-1])


@dataclass(frozen=True)
class IntEncoder:
    """A quantizer's encode, from fixed-point integers (x = X·2^−frac_bits) to its codes, with integer ops only.

    Built once from ``QParams`` (floats read at conversion time); mirrors ``quant.primitives.encode``
    with its division by the scale replaced by a dyadic factor: ``fine`` = 2^−frac_bits/scale (per channel
    for ptf/o2sf, whose α_c add to the shift), ``coarse`` = fine·2^−shift for twin_uniform/v2sf. log2
    compares X with ⌊2^−(j+0.5)·scale·2^frac_bits⌋: code = #{j < Z : x/scale ≤ 2^−(j+0.5)}, which is
    clamp(round_half_up(−log2(x/scale)), 0, Z) and Z for x ≤ 0.
    """

    params: QParams
    frac_bits: int
    fine_mantissa: Tensor
    fine_shift: Tensor
    coarse_shift: Tensor
    zero_point: Tensor
    log2_thresholds: Tensor

    @classmethod
    def build(cls, params: QParams, frac_bits: int = ACT_FRAC_BITS) -> IntEncoder:
        if params.axis is not None and params.kind not in ("ptf", "o2sf") and params.scale.dim() > 0:
            raise ValueError("IntEncoder: per-channel activation quantizers are supported for ptf/o2sf only")
        scale = params.scale.detach().to(torch.float64)
        mantissa, shift = intops.dyadic_tensor(2.0**-frac_bits / scale)
        factor_shift = params.shift.detach().to(torch.float64).round().to(torch.int64)
        if params.kind in ("ptf", "o2sf"):
            shift = shift + factor_shift
            mantissa = mantissa.expand_as(shift).clone()
        coarse_shift = shift + factor_shift if params.kind in ("twin_uniform", "v2sf") else shift
        thresholds = torch.zeros(0, dtype=torch.int64)
        if params.kind == "log2":
            zero = log2_zero_code(params.bits)
            real = [2.0 ** -(j + 0.5) * float(scale) * 2.0**frac_bits for j in range(zero)]
            thresholds = torch.tensor([math.floor(t) for t in real], dtype=torch.int64)
        zero_point = params.zero_point.detach().to(torch.float64).round().to(torch.int64)
        return cls(params, frac_bits, mantissa, shift, coarse_shift, zero_point, thresholds)

    def __call__(self, x: Tensor) -> Tensor:
        """Codes (int64) of the fixed-point tensor ``x``."""
        p = self.params
        if x.dtype != torch.int64:
            raise TypeError(f"IntEncoder: expected int64 fixed-point input, got {x.dtype}")
        if p.kind == "log2":
            counts = (x.unsqueeze(-1) <= self.log2_thresholds).sum(dim=-1)
            return counts.to(torch.int64)
        x = torch.clamp(x, -_SATURATE, _SATURATE)
        ndim = x.dim()
        mantissa = _per_channel(self.fine_mantissa, ndim)
        fine_shift = _per_channel(self.fine_shift, ndim)
        zero_point = _per_channel(self.zero_point, ndim)
        bits = p.bits
        if p.kind == "uniform":
            qmin, qmax = p.code_range
            return torch.clamp(intops.requantize(x, mantissa, fine_shift) + zero_point, qmin, qmax)
        if p.kind in ("ptf", "o2sf"):
            return torch.clamp(intops.requantize(x, mantissa, fine_shift) + zero_point, 0, 2**bits - 1)
        half = 2 ** (bits - 1)
        coarse_shift = _per_channel(self.coarse_shift, ndim)
        fine = intops.requantize(x, mantissa, fine_shift)
        coarse = intops.requantize(x, mantissa, coarse_shift)
        if p.signed and p.kind == "twin_uniform":
            negative = torch.clamp(intops.requantize(-x, mantissa, fine_shift), 0, half - 1)
            positive = torch.clamp(coarse, 0, half - 1) + half
            return torch.where(x < 0, negative, positive)
        if p.signed:  # v2sf, two's complement field
            lo, hi = -(2 ** (bits - 2)), 2 ** (bits - 2) - 1
            use_fine = (fine >= lo) & (fine <= hi)
            field = torch.where(use_fine, fine, torch.clamp(coarse, lo, hi))
            return torch.where(field < 0, field + half, field) + torch.where(use_fine, 0, half)
        fine = torch.clamp(fine, min=0)
        use_fine = fine <= half - 1
        field = torch.where(use_fine, fine, torch.clamp(coarse, 0, half - 1))
        return field + torch.where(use_fine, 0, half)


# ------------------------------------------------------------------------------------------- conversion


def quantizer_params(quantizer: Any) -> QParams:
    """A calibrated ``Quantizer``'s parameters, per-channel ones on the last axis (float64 scale)."""
    if not quantizer.calibrated:
        raise InputError("quantizer is not calibrated; run quant.calibrate_(model, data) before the integer model")
    params = quantizer.qparams()
    if params.scale.dim() > 0 or params.shift.dim() > 0:  # per-channel factors live on the last axis
        params = replace(params, axis=-1)
    return params.to(torch.float64)


def decoded_bound(params: QParams) -> int:
    """Largest |decode_int(code)| over every code the quantizer can emit."""
    qmin, qmax = params.code_range
    codes = torch.arange(qmin, qmax + 1, dtype=torch.int64)
    channels = max(params.scale.numel(), params.shift.numel())
    if params.axis is not None:  # per channel: try every channel's factor
        codes = codes.unsqueeze(-1).expand(-1, channels)
    return int(P.decode_int(codes, params).abs().max())


def _bits_for_bound(bound: int) -> int:
    """Signed bits that hold every integer in [−bound, bound]."""
    return max(bound, 1).bit_length() + 1


def _requant_factors(multipliers: Tensor, acc_bits: int) -> tuple[Tensor, Tensor]:
    """Dyadic factors with a mantissa short enough that acc·m cannot overflow int64."""
    mantissa_bits = min(intops.MANTISSA_BITS, 63 - acc_bits)
    if mantissa_bits < 8:
        raise InputError(f"accumulator of {acc_bits} bits leaves no room for a requantization factor in int64")
    return intops.dyadic_tensor(multipliers, mantissa_bits)


def _power_of_two_exponent(value: float) -> int | None:
    """e with value == 2^−e exactly, else None."""
    fraction, exponent = math.frexp(value)
    return 1 - exponent if fraction == 0.5 else None


@dataclass(frozen=True)
class IntGemm:
    """A weight GEMM: a ``QuantLinear``, or the ``QuantConv2d`` patch embedding as a GEMM on patches.

    y = requant(P.decode_int(codes) @ W, per output channel step_in·step_w·2^16) + bias, in fixed point.
    The float bias is rounded once to fixed point at conversion and added after the requantization.
    """

    name: str
    input_name: str
    encoder: IntEncoder
    input_params: QParams
    weight_t: Tensor
    acc_bits: int
    mantissa: Tensor
    shift: Tensor
    bias: Tensor
    kernel: tuple[int, int] | None = None
    weight_bits: int = 8
    low: IntGemm | None = None  # token split: the same GEMM on the low-bit tokens' codes (quant.tokens)
    split: TokenSplit | None = None

    @classmethod
    def build(cls, name: str, module: Any, input_quant: Any = None) -> IntGemm:
        """``input_quant``: the quantizer of the input (default the module's; its ``low`` for the low tokens)."""
        quantizer = module.input_quant if input_quant is None else input_quant
        params = quantizer_params(quantizer)
        weight_params = module.weight_quant.qparams().to(torch.float64)
        weight = module.weight.detach().to(torch.float64)
        weight_codes = P.encode(weight, weight_params)
        weight_int = P.decode_int(weight_codes, weight_params).reshape(weight.shape[0], -1)
        kernel = tuple(module.kernel_size) if isinstance(module, nn.Conv2d) else None
        if kernel is not None and (tuple(module.stride) != kernel or module.padding not in ((0, 0), "valid")):
            raise InputError(f"{name}: integer patch embedding needs stride = kernel size and no padding")
        k = weight_int.shape[1]
        acc_bits = (k * decoded_bound(params) * int(weight_int.abs().max().clamp(min=1))).bit_length() + 1
        in_step = float(P.grid_step(params)) if params.scale.dim() == 0 else float(params.scale)
        w_step = P.grid_step(weight_params).reshape(-1)
        mantissa, shift = _requant_factors(in_step * w_step * 2.0**ACT_FRAC_BITS, acc_bits)
        bias = module.bias if module.bias is not None else torch.zeros(weight.shape[0])
        split = module.input_quant.token_split if input_quant is None else None
        if split is not None and kernel is not None:
            raise InputError(f"{name}: a token split applies to Linear GEMMs only, not the patch embedding")
        return cls(
            f"{name}.low" if input_quant is not None else name,
            f"{name}.input_quant",
            IntEncoder.build(params),
            params,
            weight_int.t().contiguous(),
            acc_bits,
            mantissa,
            shift,
            to_fixed(bias.detach()),
            kernel,  # type: ignore[arg-type]
            weight_params.bits,
            None if split is None else cls.build(name, module, module.input_quant.low),
            split,
        )

    @property
    def acc_dtype(self) -> torch.dtype:
        """int32 where the worst-case accumulator fits in 32 bits, else int64."""
        return torch.int32 if self.acc_bits <= 32 else torch.int64

    def accumulate(self, codes: Tensor) -> Tensor:
        """The integer accumulator P.decode_int(codes) @ W (int64 values, computed in ``acc_dtype``)."""
        return intops.int_gemm(P.decode_int(codes, self.input_params), self.weight_t, self.acc_bits)

    def output(self, acc: Tensor) -> Tensor:
        """Requantize the accumulator into fixed point and add the bias."""
        return intops.requantize(acc, self.mantissa, self.shift) + self.bias

    def split_tokens(
        self, high_codes: Tensor, low_codes: Tensor, attention: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(codes of the point, high-token mask): each token's codes from its group, the mask from the high codes
        (or the class-token ``attention``, quant.tokens)."""
        assert self.split is not None and self.low is not None
        if high_codes.dim() < 3:
            raise InputError(f"{self.name}: token split needs a (batch, tokens, channels) input")
        mask = self.split.mask(P.decode_int(high_codes, self.input_params), attention)
        return torch.where(mask.unsqueeze(-1), high_codes, low_codes), mask

    def split_output(self, mask: Tensor, high_acc: Tensor, low_acc: Tensor) -> Tensor:
        """Fixed-point output: each token requantized with its group's factor (the low GEMM's for low tokens)."""
        assert self.low is not None
        return torch.where(mask.unsqueeze(-1), self.output(high_acc), self.low.output(low_acc))

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(input codes, fixed-point output) of a fixed-point input with ACT_FRAC_BITS fraction bits."""
        codes = self.encoder(x)
        return codes, self.output(self.accumulate(codes))

    def patches(self, codes: Tensor) -> Tensor:
        """Image codes (B, C, H, W) -> patch codes (B, L, C·kh·kw) in the conv weight's order."""
        kh, kw = self.kernel  # type: ignore[misc]
        b, c, h, w = codes.shape
        grid = codes.reshape(b, c, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3, 5)
        return grid.reshape(b, (h // kh) * (w // kw), c * kh * kw)


@dataclass(frozen=True)
class IntMatMul:
    """Attention's activation × activation GEMM: both operands encoded, multiplied, requantized to fixed point.

    ``a_frac_bits``: fraction bits of the first operand as the integer model holds it (q·2^−e for a
    power-of-two attention scale 2^−e is q's fixed point with e more fraction bits: no rounding).
    """

    name: str
    a_encoder: IntEncoder
    b_encoder: IntEncoder
    a_params: QParams
    b_params: QParams
    transpose_b: bool
    acc_bits: int
    mantissa: Tensor
    shift: Tensor

    @classmethod
    def build(cls, name: str, module: Any, k: int, a_frac_bits: int = ACT_FRAC_BITS) -> IntMatMul:
        a_params, b_params = quantizer_params(module.a_quant), quantizer_params(module.b_quant)
        acc_bits = (k * decoded_bound(a_params) * decoded_bound(b_params)).bit_length() + 1
        for params, operand in ((a_params, "a_quant"), (b_params, "b_quant")):
            if params.scale.dim() > 0:
                raise InputError(f"{name}.{operand}: per-channel quantizers are not supported on attention operands")
        step = float(P.grid_step(a_params)) * float(P.grid_step(b_params))
        mantissa, shift = _requant_factors(torch.tensor(step * 2.0**ACT_FRAC_BITS, dtype=torch.float64), acc_bits)
        return cls(
            name,
            IntEncoder.build(a_params, a_frac_bits),
            IntEncoder.build(b_params),
            a_params,
            b_params,
            module.transpose_b,
            acc_bits,
            mantissa,
            shift,
        )

    def accumulate(self, a_codes: Tensor, b_codes: Tensor) -> Tensor:
        a, b = P.decode_int(a_codes, self.a_params), P.decode_int(b_codes, self.b_params)
        return intops.int_gemm(a, b.transpose(-2, -1) if self.transpose_b else b, self.acc_bits)

    def __call__(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(a codes, b codes, fixed-point output) of fixed-point operands."""
        a_codes, b_codes = self.a_encoder(a), self.b_encoder(b)
        acc = self.accumulate(a_codes, b_codes)
        return a_codes, b_codes, intops.requantize(acc, self.mantissa, self.shift)


@dataclass(frozen=True)
class FixedScale:
    """Fixed point times a real constant (attention's 1/√d): ``exponent`` e when the constant is 2^−e (the value
    is then read with e more fraction bits, no rounding), else ``dyadic`` (m, s) and x·m·2^−s rounded half up."""

    scale: float
    exponent: int | None
    dyadic: tuple[int, int] | None

    @classmethod
    def build(cls, scale: float) -> FixedScale:
        exponent = _power_of_two_exponent(float(scale))
        return cls(float(scale), exponent, None if exponent is not None else intops.dyadic(float(scale)))

    def __call__(self, x: Tensor) -> Tensor:
        """x·scale in fixed point (only for a non-power-of-two scale; a power of two needs no operation)."""
        if self.dyadic is None:
            raise ValueError("FixedScale: a power-of-two scale moves the binary point; there is nothing to compute")
        return intops.requantize(x, *self.dyadic)


def fixed_mean(x: Tensor, dim: tuple[int, ...], keepdim: bool = False) -> Tensor:
    """Mean of fixed-point integers over ``dim``, rounded half up: ⌊(2·Σx + n)/(2n)⌋ (n values per mean)."""
    count = math.prod(x.shape[d] for d in dim)
    total = x.sum(dim=dim, keepdim=keepdim)
    return torch.div(2 * total + count, 2 * count, rounding_mode="floor")


LN_CENTRED_BITS = 16
"""The LayerNorm input's integers are shifted left (``IntLayerNorm.preshift``) as far as their range allows with
|x − μ| < 2^16, so ⌊√var⌋ keeps precision while (x − μ)·reciprocal stays a 32-bit product."""


@dataclass(frozen=True)
class IntLayerNorm:
    """I-LayerNorm of residual-stream integers n (step ``input_step``), affine-requantized to fixed point.

    LayerNorm is scale-free, so it runs on n << 16 directly, with eps in those units; then
    y_c = requant(norm_c, γ_c·2^(16−LN_FRAC_BITS)) + β_c (fixed point).
    """

    name: str
    eps_codes: int
    preshift: int
    mantissa: Tensor
    shift: Tensor
    bias: Tensor

    @classmethod
    def build(cls, name: str, module: nn.LayerNorm, input_step: float, input_bound: int | None = None) -> IntLayerNorm:
        """``input_bound``: the largest |n| the input integers reach (their quantizer's); unknown: no pre-shift."""
        preshift = 0 if input_bound is None else max(0, LN_CENTRED_BITS - (2 * input_bound).bit_length())
        eps_codes = math.floor(module.eps / input_step**2 * 4.0**preshift + 0.5)
        channels = module.normalized_shape[-1]
        weight = module.weight.detach() if module.weight is not None else torch.ones(channels)
        bias = module.bias.detach() if module.bias is not None else torch.zeros(channels)
        norm_bits = 2 + LN_FRAC_BITS + max(channels, 1).bit_length()  # |norm| ≤ √C·2^LN_FRAC_BITS
        mantissa, shift = _requant_factors(
            weight.to(torch.float64) * 2.0 ** (ACT_FRAC_BITS - intops.LN_FRAC_BITS), norm_bits
        )
        return cls(name, eps_codes, preshift, mantissa, shift, to_fixed(bias))

    def __call__(self, n: Tensor, observe: intops.Observer | None = None) -> Tensor:
        normed = intops.int_layernorm(torch.bitwise_left_shift(n, self.preshift), self.eps_codes, observe)
        return intops.requantize(normed, self.mantissa, self.shift) + self.bias


LN_FRAC_BITS = intops.LN_FRAC_BITS


@dataclass(frozen=True)
class IntAdd:
    """Residual add with requantization: both operands brought to fixed point, added, encoded by ``output_quant``.

    An operand that is residual-stream codes is requantized into fixed point by a dyadic factor of its
    grid step; a fixed-point operand is added as it is.
    """

    name: str
    encoder: IntEncoder
    params: QParams

    @classmethod
    def build(cls, name: str, module: Any) -> IntAdd:
        params = quantizer_params(module.output_quant)
        if params.kind != "uniform" or params.scale.dim() > 0:
            raise InputError(f"{name}.output_quant: the residual stream must be a per-tensor uniform quantizer")
        return cls(name, IntEncoder.build(params), params)

    @property
    def step(self) -> float:
        return float(P.grid_step(self.params))

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Codes of a + b, both fixed point."""
        return self.encoder(a + b)


@dataclass(frozen=True)
class StreamToFixed:
    """Residual-stream codes of one quantizer -> fixed point: decode, then a dyadic factor step·2^16."""

    params: QParams
    mantissa: int
    shift: int

    @classmethod
    def build(cls, params: QParams) -> StreamToFixed:
        bound_bits = _bits_for_bound(decoded_bound(params))
        mantissa, shift = intops.dyadic(float(P.grid_step(params)) * 2.0**ACT_FRAC_BITS, 63 - bound_bits - 1)
        return cls(params, mantissa, shift)

    def __call__(self, codes: Tensor) -> Tensor:
        return intops.requantize(P.decode_int(codes, self.params), self.mantissa, self.shift)


GELU_SHIFT = ACT_FRAC_BITS - intops.GELU_FRAC_BITS
"""Fraction bits fixed-point values lose on their way into ShiftGELU, whose x·σ then fits 32 bits."""


def gelu_fixed(x: Tensor, observe: intops.Observer | None = None) -> Tensor:
    """ShiftGELU of fixed-point x (rounded to ``GELU_FRAC_BITS`` fraction bits first), back in fixed point."""
    gelu = intops.shift_gelu(intops.shift_round(x, GELU_SHIFT), intops.GELU_FRAC_BITS, observe)  # units 2^-24
    return intops.shift_round(gelu, 2 * intops.GELU_FRAC_BITS - ACT_FRAC_BITS)


def softmax_fixed(x: Tensor, observe: intops.Observer | None = None) -> Tensor:
    """Shiftmax over the last axis of fixed-point logits; probabilities in fixed point."""
    return intops.shiftmax(x, ACT_FRAC_BITS, observe=observe)


assert intops.PROB_FRAC_BITS == ACT_FRAC_BITS, "Shiftmax's output must be on the fixed-point grid"


# ------------------------------------------------------------------------------------ the integer model


@dataclass(frozen=True)
class IntBlock:
    """One transformer block's integer kernels (timm ``Block``: pre-norm attention and MLP, two residual adds)."""

    name: str
    stream_in: StreamToFixed
    norm1: IntLayerNorm
    qkv: IntGemm
    matmul_qk: IntMatMul
    q_scale: tuple[int, int] | None  # dyadic factor for a non-power-of-two attention scale, else None
    matmul_av: IntMatMul
    proj: IntGemm
    add1: IntAdd
    stream_mid: StreamToFixed
    norm2: IntLayerNorm
    fc1: IntGemm
    fc2: IntGemm
    add2: IntAdd
    num_heads: int


@dataclass(frozen=True)
class IntegerRun:
    """One integer forward: ``logits`` (int64, fixed point with ACT_FRAC_BITS fraction bits), the codes of every
    quantization point by quantizer name, and (when traced) (name, dtype) of every intermediate tensor."""

    logits: Tensor
    codes: dict[str, Tensor]
    intermediates: tuple[tuple[str, torch.dtype], ...] = ()


class Keeper:
    """What an integer forward keeps of its tensors: each quantization point's codes (``point``), with ``trace``
    every tensor's name and dtype, and (``widths.check``) each fixed-point tensor checked against its width."""

    def __init__(self, widths: Widths, trace: bool) -> None:
        self.widths = widths
        self.trace = trace
        self.codes: dict[str, Tensor] = {}
        self.seen: list[tuple[str, torch.dtype]] = []

    def __call__(self, name: str, value: Tensor, point: bool = False) -> Tensor:
        widths = self.widths
        if self.trace:
            self.seen.append((name, value.dtype))
        if point:
            self.codes[name] = value
        if widths.check and not name.endswith(_CODE_SUFFIXES):
            if name.endswith(".acc"):
                check_width(name, value, widths.accumulator(name.removesuffix(".acc")), "accumulator")
            else:
                check_width(name, value, widths.activation_bits, "fixed-point tensor")
        return value

    def result(self, logits: Tensor) -> IntegerRun:
        """The run: ``logits`` and what was kept."""
        return IntegerRun(logits, self.codes, tuple(self.seen))


def integer_unsupported(model: nn.Module) -> str | None:
    """Why the integer-only model cannot be built for float ``model`` (before quantizing), or None when its
    structure is one ``IntegerModel`` takes: a timm ``VisionTransformer`` (ViT/DeiT) with a class token, the
    standard position embedding, token pooling, no register tokens and no LayerScale. A cheap check, so a run
    asked to verify fails before its expensive stages; ``to_integer`` still checks everything."""
    name = type(model).__name__
    if _is_swin(model):
        from quant.integer_swin import swin_unsupported  # the Swin twin builds on this module's kernels

        return swin_unsupported(model)
    if not all(hasattr(model, attr) for attr in ("blocks", "patch_embed", "pos_embed", "cls_token", "global_pool")):
        return f"{name} is not a timm VisionTransformer or SwinTransformer; the integer-only model covers ViT/DeiT/Swin"
    if model.pos_embed is None or getattr(model, "no_embed_class", False) or getattr(model, "dynamic_img_size", False):
        return f"{name}: only the standard position embedding (class token included) is supported"
    if getattr(model, "reg_token", None) is not None:
        return f"{name}: register tokens are not supported"
    if model.global_pool != "token":
        return f"{name}: global_pool {model.global_pool!r} is not supported (only 'token')"
    for index, block in enumerate(model.blocks):
        if not all(isinstance(getattr(block, part, nn.Identity()), nn.Identity) for part in ("ls1", "ls2")):
            return f"{name}: blocks.{index} has LayerScale, which the integer-only model does not support"
    return None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


class _IntegerNet:
    """What the ViT and Swin integer models (:class:`IntegerModel`, ``quant.integer_swin.IntegerSwin``) share:
    logits and argmax from ``run``, the attention matmul, a GEMM without a token split, and the accumulator
    table from ``gemms``. A subclass defines ``run`` and ``gemms``."""

    image_params: QParams
    patch_embed: Any
    run: Callable[..., IntegerRun]
    gemms: Callable[[], dict[str, IntGemm | IntMatMul]]

    def encode_images(self, images: Tensor) -> Tensor:
        """The one float→int step: image codes under the patch embedding's input quantizer."""
        return P.encode(images, self.image_params)

    def _embed_patches(self, images: Tensor, keep: Keeper) -> Tensor:
        """Image codes → patches → the patch embedding's accumulators and output tokens, each kept."""
        image_codes = keep("patch_embed.proj.input_quant", self.encode_images(images), point=True)
        patches = keep("patch_embed.patches", self.patch_embed.patches(image_codes))
        acc = keep("patch_embed.proj.acc", self.patch_embed.accumulate(patches))
        return keep("patch_embed.proj.out", self.patch_embed.output(acc))

    @staticmethod
    def _gemm(gemm: IntGemm, x: Tensor, keep: Callable[..., Tensor]) -> Tensor:
        """Encode, accumulate and requantize one weight GEMM on its whole input, keeping each tensor (Swin's
        GEMMs; the ViT's adds the token split)."""
        codes = keep(gemm.input_name, gemm.encoder(x), point=True)
        acc = keep(f"{gemm.name}.acc", gemm.accumulate(codes))
        return keep(f"{gemm.name}.out", gemm.output(acc))

    @staticmethod
    def _matmul(mm: IntMatMul, a: Tensor, b: Tensor, keep: Callable[..., Tensor]) -> Tensor:
        """Attention's activation GEMM: both operands encoded, accumulated (kept and checked), requantized."""
        a_codes = keep(f"{mm.name}.a_quant", mm.a_encoder(a), point=True)
        b_codes = keep(f"{mm.name}.b_quant", mm.b_encoder(b), point=True)
        acc = keep(f"{mm.name}.acc", mm.accumulate(a_codes, b_codes))
        return intops.requantize(acc, mm.mantissa, mm.shift)

    def forward(self, images: Tensor) -> Tensor:
        """Integer logits (int64; value·2^−16 are the real logits) of float images (N, C, H, W)."""
        return self.run(images).logits

    __call__ = forward

    def predict(self, images: Tensor) -> Tensor:
        """Class indices (argmax of the integer logits)."""
        return self.forward(images).argmax(dim=-1)

    def accumulators(self) -> dict[str, tuple[int, torch.dtype]]:
        """Worst-case accumulator bits and the accumulator dtype (int32 or int64) of every GEMM."""
        return {
            name: (g.acc_bits, torch.int32 if g.acc_bits <= 32 else torch.int64) for name, g in self.gemms().items()
        }


class IntegerModel(_IntegerNet):
    """A quantized timm ``VisionTransformer`` (``quant.quantize_`` + ``quant.calibrate_``) run with integers only.

    Built by :func:`to_integer`; weights, biases, embeddings and requantization factors are integers fixed at
    conversion. :meth:`forward` takes float images, encodes them once with the patch embedding's input
    quantizer (the only float→int step) and returns integer logits (fixed point, 2^−16 per unit).
    """

    def __init__(self, model: nn.Module, widths: Widths | None = None) -> None:
        self.widths = widths or Widths()
        name = type(model).__name__
        _require(
            hasattr(model, "blocks")
            and hasattr(model, "patch_embed")
            and isinstance(getattr(model, "pos_add", None), QuantAdd),
            f"integer model: {name} is not a quantized timm VisionTransformer (run quant.quantize_ first)",
        )
        _require(
            model.pos_embed is not None and not model.no_embed_class and not model.dynamic_img_size,
            "integer model: only the standard position embedding (class token included) is supported",
        )
        _require(model.reg_token is None, "integer model: register tokens are not supported")
        _require(model.global_pool == "token", f"integer model: global_pool {model.global_pool!r} (only 'token')")
        for attr in ("norm_pre", "fc_norm"):
            _require(isinstance(getattr(model, attr), nn.Identity), f"integer model: {attr} must be Identity")
        _require(isinstance(model.patch_embed.norm, nn.Identity), "integer model: patch_embed.norm must be Identity")
        _require(isinstance(model.patch_embed.proj, QuantConv2d), "integer model: patch_embed.proj is not quantized")
        _require(isinstance(model.head, QuantLinear), "integer model: head must be a quantized Linear")
        self.image_params: QParams = model.patch_embed.proj.input_quant.qparams()
        _require(model.patch_embed.proj.input_quant.calibrated, "integer model: model is not calibrated")
        self.patch_embed = IntGemm.build("patch_embed.proj", model.patch_embed.proj)
        self.class_token = to_fixed(model.cls_token.detach())
        self.pos_embed = to_fixed(model.pos_embed.detach())
        self.pos_add = IntAdd.build("pos_add", model.pos_add)
        stream = self.pos_add.params
        blocks = []
        for index, block in enumerate(model.blocks):
            tokens = model.patch_embed.num_patches + model.num_prefix_tokens
            blocks.append(self._block(f"blocks.{index}", block, stream, tokens))
            stream = blocks[-1].add2.params
        self.blocks: tuple[IntBlock, ...] = tuple(blocks)
        self.stream_out = StreamToFixed.build(stream)
        self.norm = IntLayerNorm.build("norm", model.norm, float(P.grid_step(stream)), decoded_bound(stream))
        self.head = IntGemm.build("head", model.head)

    @staticmethod
    def _block(name: str, block: nn.Module, stream: QParams, tokens: int) -> IntBlock:
        attn, mlp = block.attn, block.mlp
        for part in ("ls1", "ls2", "drop_path1", "drop_path2"):
            _require(
                isinstance(getattr(block, part), nn.Identity),
                f"integer model: {name}.{part} must be Identity (LayerScale and stochastic depth are not supported)",
            )
        for part in ("q_norm", "k_norm", "norm"):
            _require(
                isinstance(getattr(attn, part), nn.Identity), f"integer model: {name}.attn.{part} must be Identity"
            )
        _require(getattr(attn, "gate", None) is None, f"integer model: {name}.attn has a gate")
        _require(isinstance(mlp.act, QuantGELU), f"integer model: {name}.mlp.act must be GELU")
        _require(isinstance(mlp.norm, nn.Identity), f"integer model: {name}.mlp.norm must be Identity")
        for norm in ("norm1", "norm2"):
            _require(isinstance(getattr(block, norm), QuantLayerNorm), f"integer model: {name}.{norm} is not LayerNorm")
        exponent = _power_of_two_exponent(float(attn.scale))
        q_scale = None if exponent is not None else intops.dyadic(float(attn.scale))
        a_frac = ACT_FRAC_BITS + (exponent or 0)
        add1 = IntAdd.build(f"{name}.add1", block.add1)
        return IntBlock(
            name=name,
            stream_in=StreamToFixed.build(stream),
            norm1=IntLayerNorm.build(f"{name}.norm1", block.norm1, float(P.grid_step(stream)), decoded_bound(stream)),
            qkv=IntGemm.build(f"{name}.attn.qkv", attn.qkv),
            matmul_qk=IntMatMul.build(f"{name}.attn.matmul_qk", attn.matmul_qk, attn.head_dim, a_frac),
            q_scale=q_scale,
            matmul_av=IntMatMul.build(f"{name}.attn.matmul_av", attn.matmul_av, tokens),
            proj=IntGemm.build(f"{name}.attn.proj", attn.proj),
            add1=add1,
            stream_mid=StreamToFixed.build(add1.params),
            norm2=IntLayerNorm.build(
                f"{name}.norm2", block.norm2, float(P.grid_step(add1.params)), decoded_bound(add1.params)
            ),
            fc1=IntGemm.build(f"{name}.mlp.fc1", mlp.fc1),
            fc2=IntGemm.build(f"{name}.mlp.fc2", mlp.fc2),
            add2=IntAdd.build(f"{name}.add2", block.add2),
            num_heads=attn.num_heads,
        )

    # -- running -----------------------------------------------------------------------------------------
    def run(self, images: Tensor, *, trace: bool = False) -> IntegerRun:
        """Integer forward of float images (N, C, H, W), keeping every quantization point's codes."""
        widths = self.widths
        keep = Keeper(widths, trace)
        tokens = self._embed_patches(images, keep)
        prefix = self.class_token.expand(tokens.shape[0], -1, -1)
        tokens = keep("tokens", torch.cat([prefix, tokens], dim=1))
        keep("pos_add.sum", tokens + self.pos_embed)
        stream = keep("pos_add.output_quant", self.pos_add(tokens, self.pos_embed), point=True)
        attention: Tensor | None = None  # the latest class-token attention (quant.tokens' cls_attn score)
        for block in self.blocks:
            stream, attention = self._run_block(block, stream, keep, attention)
        normed = keep("norm.out", self.norm(P.decode_int(stream, self.stream_out.params), widths.observer("norm")))
        pooled = keep("pool", normed[:, 0])
        logits = self._gemm(self.head, pooled, keep)
        keep("logits", logits, point=True)
        return keep.result(logits)

    def _run_block(
        self, block: IntBlock, stream: Tensor, keep: Callable[..., Tensor], attention: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The block's output stream codes and its class-token attention (fixed point, summed over heads)."""
        n, observer = block.name, self.widths.observer
        x = keep(f"{n}.norm1.out", block.norm1(P.decode_int(stream, block.stream_in.params), observer(f"{n}.norm1")))
        qkv = self._gemm(block.qkv, x, keep, attention)
        batch, tokens, width = qkv.shape
        heads = block.num_heads
        q, k, v = qkv.reshape(batch, tokens, 3, heads, width // 3 // heads).permute(2, 0, 3, 1, 4).unbind(0)
        if block.q_scale is not None:
            q = keep(f"{n}.attn.q_scaled", intops.requantize(q, *block.q_scale))
        logits = keep(f"{n}.attn.logits", self._matmul(block.matmul_qk, q, k, keep))
        probs = keep(f"{n}.attn.softmax", softmax_fixed(logits, observer(f"{n}.attn.softmax")))
        attention = probs[:, :, 0, :].sum(dim=1)
        mixed = self._matmul(block.matmul_av, probs, v, keep)
        mixed = keep(f"{n}.attn.heads", mixed.transpose(1, 2).reshape(batch, tokens, width // 3))
        out = self._gemm(block.proj, mixed, keep, attention)
        residual = keep(f"{n}.add1.a", block.stream_in(stream))
        keep(f"{n}.add1.sum", residual + out)
        stream = keep(f"{n}.add1.output_quant", block.add1(residual, out), point=True)
        x = keep(f"{n}.norm2.out", block.norm2(P.decode_int(stream, block.stream_mid.params), observer(f"{n}.norm2")))
        hidden = self._gemm(block.fc1, x, keep, attention)
        hidden = keep(f"{n}.mlp.act", gelu_fixed(hidden, observer(f"{n}.mlp.act")))
        out = self._gemm(block.fc2, hidden, keep, attention)
        residual = keep(f"{n}.add2.a", block.stream_mid(stream))
        keep(f"{n}.add2.sum", residual + out)
        return keep(f"{n}.add2.output_quant", block.add2(residual, out), point=True), attention

    @staticmethod
    def _gemm(gemm: IntGemm, x: Tensor, keep: Callable[..., Tensor], attention: Tensor | None = None) -> Tensor:
        """Encode, accumulate and requantize one weight GEMM, keeping (and checking) each tensor. A token-split
        input keeps the point's codes (each token from its group) and, as ``<point>.low``, the high-token mask;
        ``attention``: the latest class-token attention (fixed point, summed over heads) for ``cls_attn``."""
        if gemm.low is not None:
            high_codes, low_codes = gemm.encoder(x), gemm.low.encoder(x)
            codes, mask = gemm.split_tokens(high_codes, low_codes, attention)
            keep(gemm.input_name, codes, point=True)
            keep(f"{gemm.input_name}.low", mask.to(torch.int64), point=True)
            high_acc = keep(f"{gemm.name}.acc", gemm.accumulate(high_codes))
            low_acc = keep(f"{gemm.low.name}.acc", gemm.low.accumulate(low_codes))
            return keep(f"{gemm.name}.out", gemm.split_output(mask, high_acc, low_acc))
        return _IntegerNet._gemm(gemm, x, keep)

    def gemms(self) -> dict[str, IntGemm | IntMatMul]:
        """Every integer GEMM by contract name."""
        found: dict[str, IntGemm | IntMatMul] = {"patch_embed.proj": self.patch_embed}
        for block in self.blocks:
            for gemm in (block.qkv, block.matmul_qk, block.matmul_av, block.proj, block.fc1, block.fc2):
                found[gemm.name] = gemm
        found["head"] = self.head
        return found


def _is_swin(model: nn.Module) -> bool:
    return type(model).__name__ == "SwinTransformer" and hasattr(model, "layers")


def to_integer(model: nn.Module, widths: Widths | None = None) -> Any:
    """The integer-only twin of a quantized, calibrated timm ViT (:class:`IntegerModel`) or Swin
    (``quant.integer_swin.IntegerSwin``, the same interface); ``widths``: the datapath widths it checks every
    tensor against as it runs (default 32-bit accumulators and activations)."""
    if _is_swin(model):
        from quant.integer_swin import IntegerSwin  # the Swin twin builds on this module's kernels

        return IntegerSwin(model, widths)
    return IntegerModel(model, widths)
