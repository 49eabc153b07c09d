"""quant/intops.py: integer primitives against slow Python-int twins and float references (with error bounds)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quant import intops

# ---------------------------------------------------------------- slow, obvious twins on Python ints


def naive_shift_round(value: int, shift: int, rounding: str) -> int:
    if shift == 0:
        return value
    exact = Fraction(value, 1 << shift)
    floor = math.floor(exact)
    rest = exact - floor
    if rest > Fraction(1, 2):
        return floor + 1
    if rest < Fraction(1, 2):
        return floor
    return floor + (1 if rounding == "half_up" or floor % 2 else 0)


def naive_isqrt(value: int) -> int:
    root = 0
    while (root + 1) * (root + 1) <= value:
        root += 1
    return root


def naive_gemm(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    return [[sum(a[i][t] * b[t][j] for t in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


# ---------------------------------------------------------------- dyadic numbers


@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False) | st.floats(min_value=-1e6, max_value=-1e-12))
def test_dyadic_is_an_int32_mantissa_and_close(multiplier: float) -> None:
    mantissa, shift = intops.dyadic(multiplier)
    assert -(1 << 31) < mantissa < (1 << 31)
    assert 0 <= shift <= intops.MAX_SHIFT
    assert abs(mantissa * 2.0**-shift - multiplier) <= max(abs(multiplier) * 2.0**-30, 2.0**-63)


def test_dyadic_edges() -> None:
    assert intops.dyadic(0.0) == (0, 0)
    assert intops.dyadic(0.5) == (1 << 30, 31)
    assert intops.dyadic(1 - 2**-40) == (1 << 30, 30)  # mantissa rounded up to 2^31, renormalised
    with pytest.raises(ValueError, match="2\\^31"):
        intops.dyadic(2.0**32)
    with pytest.raises(ValueError, match="finite"):
        intops.dyadic(float("nan"))
    mantissas, shifts = intops.dyadic_tensor(torch.tensor([0.25, -0.003], dtype=torch.float64))
    assert (mantissas.tolist(), shifts.tolist()) == (
        [1 << 30, intops.dyadic(-0.003)[0]],
        [32, intops.dyadic(-0.003)[1]],
    )


@settings(max_examples=200)
@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, 20), st.sampled_from(["half_even", "half_up"]))
def test_shift_round_matches_exact_fractions(value: int, shift: int, rounding: str) -> None:
    got = intops.shift_round(torch.tensor([value]), shift, rounding).item()  # type: ignore[arg-type]
    assert got == naive_shift_round(value, shift, rounding)


def test_shift_round_ties_and_per_channel_shifts() -> None:
    x = torch.tensor([5, 7, -5, -7, 6])  # halves at shift 1: 2.5, 3.5, -2.5, -3.5, 3
    assert intops.shift_round(x, 1, "half_even").tolist() == [2, 4, -2, -4, 3]
    assert intops.shift_round(x, 1, "half_up").tolist() == [3, 4, -2, -3, 3]
    shifts = torch.tensor([0, 1, 2, 3, 0])
    assert intops.shift_round(x, shifts).tolist() == [
        naive_shift_round(v, s, "half_up") for v, s in zip(x.tolist(), shifts.tolist(), strict=True)
    ]


def test_requantize_matches_real_rescale() -> None:
    generator = torch.Generator().manual_seed(0)
    acc = torch.randint(-(1 << 24), 1 << 24, (1000,), generator=generator)
    scale = 0.000731
    mantissa, shift = intops.dyadic(scale)
    got = intops.requantize(acc, mantissa, shift)
    exact = [naive_shift_round(a * mantissa, shift, "half_up") for a in acc.tolist()]
    assert got.tolist() == exact
    # the dyadic error (2^-30 relative) moves at most a few results by one step
    assert (got - torch.floor(acc.double() * scale + 0.5).long()).abs().max().item() <= 1


def test_requantize_offset_is_in_shifted_units() -> None:
    out = intops.requantize(torch.tensor([10]), 3, 2, offset=2)  # (30 + 2)/4 = 8
    assert out.tolist() == [8]


def test_requantize_rejects_float() -> None:
    with pytest.raises(TypeError, match="int64"):
        intops.requantize(torch.tensor([1.0]), 1, 1)


# ---------------------------------------------------------------- GEMM and accumulator width


@pytest.mark.parametrize("acc_bits", [None, 20, 40])
def test_int_gemm_matches_python_loop(acc_bits: int | None) -> None:
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(-128, 128, (5, 7), generator=generator)
    b = torch.randint(-128, 128, (7, 3), generator=generator)
    got = intops.int_gemm(a, b, acc_bits)
    assert got.dtype == torch.int64
    assert got.tolist() == naive_gemm(a.tolist(), b.tolist())


def test_int_gemm_int64_path_holds_sums_beyond_int32() -> None:
    a = torch.full((1, 4), 1 << 20)
    b = torch.full((4, 1), 1 << 20)
    assert intops.int_gemm(a, b, 43).item() == 4 << 40  # 4·2^40 needs 43 signed bits


# ---------------------------------------------------------------- nonlinear operators vs float references


def test_shiftmax_close_to_softmax() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(64, 197, generator=generator, dtype=torch.float64) * 3
    codes = torch.round(logits * 2**intops.LOGIT_FRAC_BITS).long()
    probs = intops.shiftmax(codes).double() / 2**intops.PROB_FRAC_BITS
    reference = torch.softmax(logits, dim=-1)
    # I-ViT's linear 2^-f ≈ 1 - f/2 is off by ≤ 6 % per exponential; measured max abs error 0.012 here
    assert (probs - reference).abs().max().item() < 0.03
    assert (probs.sum(dim=-1) - 1).abs().max().item() < 1e-3
    assert probs.argmax(dim=-1).tolist() == reference.argmax(dim=-1).tolist()
    fine = intops.shiftmax(torch.round(logits * 2**16).long(), 16).double() / 2**intops.PROB_FRAC_BITS
    assert (fine - reference).abs().max().item() < 0.03


def test_shiftmax_one_hot_and_uniform_rows() -> None:
    big = torch.tensor([[0, -(100 << intops.LOGIT_FRAC_BITS)]])
    assert intops.shiftmax(big).tolist() == [[1 << intops.PROB_FRAC_BITS, 0]]
    flat = torch.zeros(1, 4, dtype=torch.int64)
    assert intops.shiftmax(flat).tolist() == [[1 << (intops.PROB_FRAC_BITS - 2)] * 4]


def test_shift_exp2_exact_at_integers() -> None:
    f = intops.LOGIT_FRAC_BITS
    neg = torch.tensor([0, -(1 << f), -(3 << f)])
    assert intops.shift_exp2(neg, f).tolist() == [1 << intops.EXP_FRAC_BITS, 1 << 15, 1 << 13]


def test_shift_gelu_close_to_gelu() -> None:
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    codes = torch.round(x * 2**intops.GELU_FRAC_BITS).long()
    got = intops.shift_gelu(codes).double() / 2 ** (2 * intops.GELU_FRAC_BITS)
    # x·σ(1.6875x) with a linear exp fraction vs erf GELU: measured max abs error 0.025 (at |x| ≈ 2)
    assert (got - torch.nn.functional.gelu(x)).abs().max().item() < 0.04
    assert got[codes == 0].tolist() == [0.0]
    fine = intops.shift_gelu(torch.round(x * 2**16).long(), 16).double() / 2**32
    assert (fine - torch.nn.functional.gelu(x)).abs().max().item() < 0.04


@settings(max_examples=100)
@given(st.lists(st.integers(0, (1 << 62) - 1), min_size=1, max_size=20))
def test_isqrt_is_floor_sqrt(values: list[int]) -> None:
    assert intops.isqrt(torch.tensor(values)).tolist() == [math.isqrt(v) for v in values]


def test_isqrt_matches_loop_twin_on_small_values() -> None:
    values = list(range(0, 300))
    assert intops.isqrt(torch.tensor(values)).tolist() == [naive_isqrt(v) for v in values]
    with pytest.raises(ValueError, match="negative"):
        intops.isqrt(torch.tensor([-1]))


@pytest.mark.parametrize("spread", [0.05, 1.0, 40.0])
def test_int_layernorm_close_to_layer_norm(spread: float) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(16, 384, generator=generator, dtype=torch.float64) * spread + 2
    # the integer model pre-shifts the input so |x − μ| < 2^16 (quant.integer.LN_CENTRED_BITS): do the same here
    frac = min(12, 15 - math.ceil(math.log2(4 * spread)))
    codes = torch.round(x * 2**frac).long()
    eps = 1e-6
    got = intops.int_layernorm(codes, round(eps * 4**frac)).double() / 2**intops.LN_FRAC_BITS
    reference = torch.nn.functional.layer_norm(codes.double() / 2**frac, (384,), eps=eps)
    # error: rounded mean, ⌊var⌋, ⌊√⌋ (relative 1/σ_codes), the reciprocal (relative σ_codes/2^24) and the 2^-12
    # output step
    bound = 5e-3 if spread >= 1 else 0.05
    assert (got - reference).abs().max().item() < bound


def test_int_layernorm_constant_row_is_zero() -> None:
    assert intops.int_layernorm(torch.full((1, 8), 77), 0).tolist() == [[0] * 8]


def test_nonlinear_intermediates_fit_32_bits_in_their_design_range() -> None:
    """Shiftmax, ShiftGELU (at GELU_FRAC_BITS, |x| < 2^7) and I-LayerNorm (|x − μ| < 2^16, C ≤ 1024) keep every
    intermediate in 32 bits, the row statistics in 48; the observer sees each one by name."""
    generator = torch.Generator().manual_seed(5)
    seen: dict[str, int] = {}

    def observe(part: str, value: torch.Tensor) -> None:
        seen[part] = max(seen.get(part, 0), int(value.abs().max()))

    # the worst rows: a one-hot row (exp = Σ exp), logits that span far more than e^-63
    logits = torch.cat([torch.full((1, 197), -(1 << 28)), torch.randint(-(1 << 20), 1 << 20, (7, 197))])
    logits[0, 0] = 1 << 28
    intops.shiftmax(logits, 16, observe=observe)
    x = torch.randint(-(1 << 19) + 1, 1 << 19, (8, 64), generator=generator)  # |x| < 2^7 at 12 fraction bits
    intops.shift_gelu(x, intops.GELU_FRAC_BITS, observe=observe)
    centred = torch.randint(-(1 << 15), 1 << 15, (4, 1024), generator=generator)
    centred[0] = torch.tensor([1 << 15, -(1 << 15)] * 512)  # σ as large as it gets
    centred[1] = 0
    centred[1, 0] = (1 << 15) - 1  # one outlier over a flat row: |x − μ| = √C·σ at its largest
    intops.int_layernorm(centred, 1, observe=observe)
    parts = {"shifted", "exp", "sum", "reciprocal", "product", "scaled", "numerator", "sigmoid", "centred",
             "square_sum", "variance", "std"}  # fmt: skip
    assert parts <= set(seen)
    for part, largest in seen.items():
        bits = 48 if part in intops.ROW_STATISTICS else 32
        assert largest < 1 << (bits - 1), (part, largest)
