"""Integer-only primitives shared by the integer model and the fake-quant model's exact mode.

Every function here takes and returns torch ``int64`` tensors (torch, not numpy: the models, the exact mode
and the integer model all live in torch, so no tensor crosses a library boundary; ``int64`` because every
intermediate fits in 63 bits; the integer model derives each GEMM's worst-case accumulator bits from its
operands' ranges and checks every tensor against the width its datapath gives it, ``quant.integer.Widths``).
Floats appear only in the conversion-time helpers that turn a real scale into integers (:func:`dyadic`,
:func:`dyadic_tensor`); nothing that runs per image touches a float.

Sources:
- Dyadic requantization, M = S_w·S_in/S_out ≈ m·2^−s with an int32 mantissa m and
  out = (acc·m + 2^(s−1)) >> s: HAWQ-V3 (Yao et al., ICML 2021), section 3.2.
- Shiftmax (exp via x·log2e ≈ x + (x>>1) − (x>>4), 2^−f ≈ 1 − f/2 on the fraction), ShiftGELU
  (x·σ(1.702x) with 1.702 ≈ 1 + 1/2 + 1/8 + 1/16) and I-LayerNorm with an integer Newton square root:
  I-ViT (Li & Gu, ICCV 2023), sections 3.2-3.4 and algorithm 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

__all__ = [
    "EXP_FRAC_BITS",
    "GELU_FRAC_BITS",
    "LN_FRAC_BITS",
    "LN_RECIPROCAL_BITS",
    "LOGIT_FRAC_BITS",
    "PROB_FRAC_BITS",
    "ROW_STATISTICS",
    "SOFTMAX_RECIPROCAL_BITS",
    "Observer",
    "Rounding",
    "dyadic",
    "dyadic_tensor",
    "int_gemm",
    "int_layernorm",
    "isqrt",
    "requantize",
    "shift_exp2",
    "shift_gelu",
    "shift_round",
    "shiftmax",
]

Rounding = Literal["half_even", "half_up"]

MANTISSA_BITS = 31
"""Bits of the dyadic mantissa's magnitude: m is an int32 (HAWQ-V3)."""
MAX_SHIFT = 62
"""Largest requantization shift; beyond it m·2^−s is below what an int64 product can resolve."""

LOGIT_FRAC_BITS = 10
"""Fraction bits of the fixed-point attention logits and sigmoid arguments fed to the shift exponential."""
EXP_FRAC_BITS = 16
"""Fraction bits of the shift exponential's output (values in (0, 1])."""
PROB_FRAC_BITS = 16
"""Fraction bits of Shiftmax probabilities before they are requantized to the post-Softmax quantizer."""
GELU_FRAC_BITS = 12
"""Fraction bits of the fixed-point GELU input (the fc1 output) and of the sigmoid factor."""
LN_FRAC_BITS = 12
"""Fraction bits of the normalised LayerNorm value (x − μ)/σ before the affine requantization."""
SOFTMAX_RECIPROCAL_BITS = 30
"""Shiftmax's per-row reciprocal is ⌊2^SOFTMAX_RECIPROCAL_BITS / Σ exp⌋. Every exp ≤ Σ exp, so exp·reciprocal
≤ 2^30: the product fits an int32 (32-bit intermediates, as I-ViT's integer-only datapath keeps them)."""
LN_RECIPROCAL_BITS = 24
"""I-LayerNorm's per-row reciprocal is ⌊2^LN_RECIPROCAL_BITS / σ⌋. |x − μ| ≤ √C·σ, so (x − μ)·reciprocal
≤ 2·√C·2^24 (σ ≥ 1 and the floor of σ): below 2^31 for C ≤ 1024 channels, an int32 product."""

Observer = Callable[[str, torch.Tensor], None]
"""Called with (part, tensor) for each intermediate of a nonlinear operator, so a caller can check its width."""
ROW_STATISTICS = frozenset({"square_sum", "variance"})
"""Intermediates that are per-row statistics (LayerNorm's Σ(x − μ)² and variance): hardware keeps them in a
wider accumulator (a DSP48E2 cascade accumulates in 48 bits, UG579); every other intermediate is per element."""


def _observe(observe: Observer | None, part: str, value: torch.Tensor) -> torch.Tensor:
    if observe is not None:
        observe(part, value)
    return value


def _int64(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype != torch.int64:
        raise TypeError(f"{what}: expected an int64 tensor, got {x.dtype}")
    return x


# ---------------------------------------------------------------- conversion-time: real scale -> integers


def dyadic(multiplier: float, mantissa_bits: int = MANTISSA_BITS) -> tuple[int, int]:
    """Write a real multiplier as m·2^−s: m a signed mantissa of ``mantissa_bits`` magnitude bits (default
    31: an int32, frexp·2^31, |m| in [2^30, 2^31)), s ≥ 0 a shift.

    Zero maps to (0, 0). Shifts above 62 trade mantissa bits for a smaller shift, so acc·m stays in int64.
    A smaller ``mantissa_bits`` makes room for wide accumulators: acc·m fits int64 when
    acc bits + mantissa_bits ≤ 63.
    """
    if not math.isfinite(multiplier):
        raise ValueError(f"dyadic: multiplier must be finite, got {multiplier}")
    if multiplier == 0.0:
        return 0, 0
    fraction, exponent = math.frexp(multiplier)  # multiplier = fraction·2^exponent, |fraction| in [0.5, 1)
    mantissa = math.floor(fraction * (1 << mantissa_bits) + 0.5)
    if abs(mantissa) == 1 << mantissa_bits:  # rounding reached 2^bits, one bit too many
        mantissa //= 2
        exponent += 1
    shift = mantissa_bits - exponent
    if shift < 0:
        raise ValueError(f"dyadic: multiplier {multiplier} ≥ 2^{mantissa_bits} cannot be a requantization factor")
    if shift > MAX_SHIFT:
        mantissa = _round_half_even_int(mantissa, shift - MAX_SHIFT)
        shift = MAX_SHIFT
    return mantissa, shift


def _round_half_even_int(value: int, shift: int) -> int:
    quotient, remainder = divmod(value, 1 << shift)
    half = 1 << (shift - 1)
    if remainder > half or (remainder == half and quotient % 2 == 1):
        quotient += 1
    return quotient


def dyadic_tensor(multipliers: torch.Tensor, mantissa_bits: int = MANTISSA_BITS) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dyadic` element by element: (mantissas, shifts) as int64 tensors of the multipliers' shape."""
    flat = multipliers.detach().to(torch.float64).reshape(-1).tolist()
    pairs = [dyadic(value, mantissa_bits) for value in flat]
    mantissas = torch.tensor([p[0] for p in pairs], dtype=torch.int64).reshape(multipliers.shape)
    shifts = torch.tensor([p[1] for p in pairs], dtype=torch.int64).reshape(multipliers.shape)
    return mantissas, shifts


# ---------------------------------------------------------------- rounding shifts and requantization


def shift_round(x: torch.Tensor, shift: torch.Tensor | int, rounding: Rounding = "half_up") -> torch.Tensor:
    """x·2^−shift rounded to an integer (shift ≥ 0, broadcast against x).

    ``half_up`` (the default) is HAWQ-V3's (x + 2^(s−1)) >> s, i.e. ⌊t + 0.5⌋, the one rounding rule of
    ``quant.primitives.round_half_up``; ``half_even`` rounds ties to the even integer (``torch.round``).
    """
    _int64(x, "shift_round")
    if rounding not in ("half_up", "half_even"):
        raise ValueError(f"shift_round: unknown rounding {rounding!r}")
    if isinstance(shift, int):
        if shift == 0:
            return x
        if rounding == "half_up":  # the common case, in two passes over x
            return torch.bitwise_right_shift(x + (1 << (shift - 1)), shift)
    shift = torch.as_tensor(shift, dtype=torch.int64)
    positive = shift > 0
    all_positive = bool(positive.all())
    safe = shift if all_positive else torch.where(positive, shift, torch.ones_like(shift))
    half = torch.bitwise_left_shift(torch.ones_like(safe), safe - 1)
    if rounding == "half_up":
        rounded = torch.bitwise_right_shift(x + half, safe)
    else:
        floor = torch.bitwise_right_shift(x, safe)
        remainder = x - torch.bitwise_left_shift(floor, safe)
        up = (remainder > half) | ((remainder == half) & (torch.bitwise_and(floor, 1) == 1))
        rounded = floor + up.to(torch.int64)
    return rounded if all_positive else torch.where(positive, rounded, x)


def requantize(
    acc: torch.Tensor,
    mantissa: torch.Tensor | int,
    shift: torch.Tensor | int,
    *,
    offset: torch.Tensor | int = 0,
    rounding: Rounding = "half_up",
) -> torch.Tensor:
    """Dyadic requantization: (acc·m + offset)·2^−s, rounded (HAWQ-V3). ``offset`` is in units of 2^−s.

    ``mantissa``/``shift``/``offset`` broadcast against ``acc`` (per-channel factors on the last axis).
    """
    _int64(acc, "requantize")
    scaled = acc * mantissa
    if not (isinstance(offset, int) and offset == 0):
        scaled = scaled + offset
    return shift_round(scaled, shift, rounding)


def int_gemm(a: torch.Tensor, b: torch.Tensor, acc_bits: int | None = None) -> torch.Tensor:
    """a @ b on integer codes, accumulated in int32 where ``acc_bits`` ≤ 32 says it cannot overflow, else int64.

    ``acc_bits`` is the worst case (``quant.integer.IntGemm.acc_bits``); None means unknown, so int64. Returns int64.
    """
    _int64(a, "int_gemm a")
    _int64(b, "int_gemm b")
    if acc_bits is not None and acc_bits <= 32:
        return torch.matmul(a.to(torch.int32), b.to(torch.int32)).to(torch.int64)
    return torch.matmul(a, b)


# ---------------------------------------------------------------- I-ViT nonlinear operators


def shift_exp2(neg: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """2^(neg·2^−frac_bits) for neg ≤ 0, in units of 2^−EXP_FRAC_BITS, by shifts only (I-ViT ShiftExp).

    Split −neg = q·2^F + r; 2^(−r/2^F) ≈ 1 − r/2^(F+1) (I-ViT's linear fraction), then shift right by q.
    """
    _int64(neg, "shift_exp2")
    magnitude = -neg
    whole = torch.bitwise_right_shift(magnitude, frac_bits)
    fraction = magnitude - torch.bitwise_left_shift(whole, frac_bits)
    # 1 - r/2^(F+1) in units of 2^-EXP_FRAC_BITS
    if frac_bits + 1 <= EXP_FRAC_BITS:
        linear = (1 << EXP_FRAC_BITS) - torch.bitwise_left_shift(fraction, EXP_FRAC_BITS - frac_bits - 1)
    else:
        linear = (1 << EXP_FRAC_BITS) - torch.bitwise_right_shift(fraction, frac_bits + 1 - EXP_FRAC_BITS)
    return torch.bitwise_right_shift(linear, torch.clamp(whole, max=63))


def _times_log2e(x: torch.Tensor) -> torch.Tensor:
    # x·log2(e) ≈ x + x/2 − x/16 = 1.4375·x (I-ViT); log2(e) = 1.4427
    return x + torch.bitwise_right_shift(x, 1) - torch.bitwise_right_shift(x, 4)


def shiftmax(
    logits: torch.Tensor, frac_bits: int = LOGIT_FRAC_BITS, dim: int = -1, observe: Observer | None = None
) -> torch.Tensor:
    """Integer softmax (I-ViT Shiftmax) of fixed-point logits with ``frac_bits`` fraction bits.

    Returns probabilities in units of 2^−PROB_FRAC_BITS along ``dim``. Per row one integer division (the
    reciprocal of the sum), then a multiply and a shift per element, as I-ViT's IntDiv. ``observe`` sees the
    intermediates ``shifted``, ``exp``, ``sum``, ``reciprocal`` and ``product``.
    """
    _int64(logits, "shiftmax")
    shifted = _observe(observe, "shifted", _times_log2e(logits - logits.amax(dim=dim, keepdim=True)))  # ≤ 0
    exp = _observe(observe, "exp", shift_exp2(shifted, frac_bits))  # every exponential is ≤ 1
    total = _observe(observe, "sum", exp.sum(dim=dim, keepdim=True))  # ≥ 2^EXP_FRAC_BITS: the maximum gives 1
    reciprocal = torch.div(torch.full_like(total, 1 << SOFTMAX_RECIPROCAL_BITS), total, rounding_mode="floor")
    product = _observe(observe, "product", exp * _observe(observe, "reciprocal", reciprocal))
    return shift_round(product, SOFTMAX_RECIPROCAL_BITS - PROB_FRAC_BITS, "half_up")


def shift_gelu(x: torch.Tensor, frac_bits: int = GELU_FRAC_BITS, observe: Observer | None = None) -> torch.Tensor:
    """Integer GELU (I-ViT ShiftGELU): x·σ(1.702x) on fixed-point x with ``frac_bits`` fraction bits.

    Returns GELU(x) in units of 2^−(2·frac_bits). σ(t) for t ≤ 0 is e^t/(1 + e^t) with e^t by
    :func:`shift_exp2`; σ(t) = 1 − σ(−t) for t > 0. One integer division per element. ``observe`` sees the
    intermediates ``scaled``, ``exp``, ``numerator``, ``sigmoid`` and ``product``; with ``frac_bits`` = 12 every
    one fits 32 bits while |x| < 2^7 (|x·σ| < 2^31).
    """
    _int64(x, "shift_gelu")
    # 1.702·x ≈ x + x/2 + x/8 + x/16 = 1.6875·x (I-ViT), then ·log2(e) for base 2
    scaled = x + torch.bitwise_right_shift(x, 1) + torch.bitwise_right_shift(x, 3) + torch.bitwise_right_shift(x, 4)
    scaled = _observe(observe, "scaled", _times_log2e(-torch.abs(scaled)))
    exp = _observe(observe, "exp", shift_exp2(scaled, frac_bits))  # e^(−|t|), units 2^-EXP_FRAC_BITS
    one = 1 << EXP_FRAC_BITS
    numerator = _observe(observe, "numerator", torch.bitwise_left_shift(exp, frac_bits))
    sigmoid_neg = torch.div(numerator, exp + one, rounding_mode="floor")
    sigmoid = _observe(observe, "sigmoid", torch.where(x >= 0, (1 << frac_bits) - sigmoid_neg, sigmoid_neg))
    return _observe(observe, "product", x * sigmoid)


def isqrt(x: torch.Tensor) -> torch.Tensor:
    """⌊√x⌋ of non-negative int64 values by integer Newton iteration (I-ViT I-LayerNorm)."""
    _int64(x, "isqrt")
    if bool((x < 0).any()):
        raise ValueError("isqrt: negative input")
    positive = torch.clamp(x, min=1)  # Newton from above never reaches 0 for x ≥ 1
    bit_length = (positive.unsqueeze(-1) >= _POWERS_OF_TWO).sum(dim=-1)
    guess = torch.bitwise_left_shift(torch.ones_like(x), (bit_length + 1) // 2)  # ≥ √x
    while True:
        step = torch.bitwise_right_shift(guess + torch.div(positive, guess, rounding_mode="floor"), 1)
        better = step < guess
        if not bool(better.any()):
            break
        guess = torch.where(better, step, guess)
    return torch.where(x == 0, torch.zeros_like(x), guess)


_POWERS_OF_TWO = torch.tensor([1 << i for i in range(63)], dtype=torch.int64)


def int_layernorm(x: torch.Tensor, eps_codes: int, observe: Observer | None = None) -> torch.Tensor:
    """(x − μ)/√(var + eps) over the last axis of integer x, in units of 2^−LN_FRAC_BITS (I-LayerNorm).

    μ is rounded to an integer, var = ⌊Σ(x − μ)²/C⌋, σ = :func:`isqrt`(var + eps_codes) with eps in x's
    squared units; one integer reciprocal per row, then a multiply and a rounding shift per element.
    The affine γ, β belong to the requantization that follows (per-channel dyadic factors and offsets).
    ``observe`` sees ``sum``, ``centred``, ``square_sum``, ``variance``, ``std``, ``reciprocal`` and ``product``
    (the two ``ROW_STATISTICS`` are wider in hardware; the rest fit 32 bits while |x − μ| < 2^16).
    """
    _int64(x, "int_layernorm")
    channels = x.shape[-1]
    total = _observe(observe, "sum", x.sum(dim=-1, keepdim=True))
    mean = torch.div(2 * total + channels, 2 * channels, rounding_mode="floor")  # round half up
    centred = _observe(observe, "centred", x - mean)
    square_sum = _observe(observe, "square_sum", (centred * centred).sum(dim=-1, keepdim=True))
    variance = _observe(observe, "variance", torch.div(square_sum, channels, rounding_mode="floor"))
    std = _observe(observe, "std", torch.clamp(isqrt(variance + eps_codes), min=1))
    reciprocal = torch.div(torch.full_like(std, 1 << LN_RECIPROCAL_BITS), std, rounding_mode="floor")
    product = _observe(observe, "product", centred * _observe(observe, "reciprocal", reciprocal))
    return shift_round(product, LN_RECIPROCAL_BITS - LN_FRAC_BITS, "half_up")
