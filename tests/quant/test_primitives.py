"""quant.primitives: round trips, error bounds, integer decode and straight-through gradients per kind."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quant import primitives as P
from quant.errors import InputError

BITS = (2, 3, 4, 5, 6, 8)


def _data(kind: str, seed: int = 0) -> torch.Tensor:
    """A distribution each kind is meant for: softmax rows, GELU outputs, LayerNorm outputs with outliers."""
    g = torch.Generator().manual_seed(seed)
    if kind in ("log2", "twin_uniform", "v2sf"):
        return torch.softmax(torch.randn(16, 64, generator=g) * 3, dim=-1)
    if kind in ("ptf", "o2sf"):
        x = torch.randn(64, 32, generator=g)
        x[:, 3] *= 20
        return x
    return torch.randn(64, 32, generator=g)


def test_round_half_up_ties_go_up() -> None:
    t = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51])
    assert P.round_half_up(t).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 0.0, -1.0]


@pytest.mark.parametrize("kind", P.KINDS)
@pytest.mark.parametrize("bits", BITS)
def test_codes_in_range_and_decode_is_integer_grid(kind: str, bits: int) -> None:
    x = _data(kind)
    p = P.fit(x, bits, kind)
    codes = P.encode(x, p)
    qmin, qmax = p.code_range
    assert codes.dtype == torch.int64
    assert int(codes.min()) >= qmin and int(codes.max()) <= qmax
    assert qmax - qmin < 2**bits  # b bits hold every code
    n = P.decode_int(codes, p)
    step = P.grid_step(p)
    if p.axis is not None and step.dim() > 0:
        step = step.reshape([-1 if d == p.axis % x.dim() else 1 for d in range(x.dim())])
    # decode == integer n times the grid step, exactly (float64 holds both)
    assert torch.equal(P.decode(codes, p.to(torch.float64)), n.double() * step.double())
    # the float decode agrees with the integer decode
    assert torch.equal(P._decode_n_float(codes.double(), p.to(torch.float64)), n.double())


@pytest.mark.parametrize("kind", P.KINDS)
@pytest.mark.parametrize("bits", BITS)
def test_fake_quantize_equals_decode_of_encode_and_is_idempotent(kind: str, bits: int) -> None:
    x = _data(kind, seed=1)
    p = P.fit(x, bits, kind)
    fq = P.fake_quantize(x, p)
    assert torch.allclose(fq, P.decode(P.encode(x, p), p), rtol=1e-6, atol=1e-9)
    assert torch.allclose(P.fake_quantize(fq, p), fq, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bits", BITS)
def test_uniform_error_bound_half_step_inside_range(bits: int) -> None:
    x = torch.randn(32, 50)
    for symmetric, axis in ((True, 0), (False, None), (False, 0)):
        p = P.fit(x, bits, "uniform", symmetric=symmetric, axis=axis)
        step = p.scale if p.axis is None else p.scale[:, None]
        err = (P.fake_quantize(x, p) - x).abs()
        assert bool((err <= step / 2 + 1e-6).all()), (symmetric, axis)  # min-max: nothing is clipped


def test_uniform_symmetric_per_channel_uses_restricted_range() -> None:
    w = torch.tensor([[0.875, -0.4375, 0.21875], [-7.0, 3.5, 0.0]])  # scales 1/8 and 1: exact in binary
    p = P.fit(w, 4, "uniform", symmetric=True, axis=0)
    assert p.code_range == (-7, 7)
    assert p.scale.tolist() == [0.125, 1.0]
    assert P.encode(w, p).tolist() == [[7, -3, 2], [-7, 4, 0]]  # -3.5 -> -3 and 1.75 -> 2: ties go up


def test_asymmetric_zero_point_represents_zero_exactly() -> None:
    x = torch.linspace(-0.3, 5.0, 101)
    p = P.fit(x, 8, "uniform")
    assert float(P.fake_quantize(torch.zeros(1), p)) == 0.0
    assert 0 <= int(p.zero_point) <= 255


def test_log2_levels_are_powers_of_two_and_zero_code() -> None:
    p = P.QParams("log2", 3, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0))
    x = torch.tensor([1.0, 0.5, 0.3, 0.25, 2**-6, 2**-7.6, 0.0, -0.2])
    codes = P.encode(x, p)
    assert P.log2_zero_code(3) == 7
    assert codes.tolist() == [0, 1, 2, 2, 6, 7, 7, 7]
    assert P.decode(codes, p).tolist() == [1.0, 0.5, 0.25, 0.25, 2**-6, 0.0, 0.0, 0.0]
    assert P.decode_int(codes, p).tolist() == [64, 32, 16, 16, 1, 0, 0, 0]  # grid 2^-6


def test_log2_shift_is_capped_for_integer_sums() -> None:
    assert P.log2_zero_code(8) == P.LOG2_MAX_SHIFT + 1
    p = P.QParams("log2", 8, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0))
    n = P.decode_int(torch.arange(0, P.log2_zero_code(8) + 1), p)
    assert int(n.max()) == 2**P.LOG2_MAX_SHIFT and int(n[-1]) == 0


def test_log2_integer_threshold_rule_matches_encode() -> None:
    """Documented integer encode: q = k iff 2^-(2k+1) < t² <= 2^-(2k-1)."""
    t = torch.rand(2000, dtype=torch.float64) * 0.999 + 1e-4
    p = P.QParams(
        "log2", 4, torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64), torch.tensor(0)
    )
    codes = P.encode(t, p)
    for k in range(0, P.log2_zero_code(4)):
        inside = (t**2 > 2.0 ** -(2 * k + 1)) & (t**2 <= 2.0 ** -(2 * k - 1))
        assert bool((codes[inside] == k).all())


def test_twin_uniform_post_gelu_negative_step() -> None:
    x = torch.nn.functional.gelu(torch.linspace(-4, 6, 500))
    p = P.fit(x, 4, "twin_uniform")
    assert p.signed
    assert math.isclose(float(p.scale), P.GELU_MIN / 2**3, rel_tol=1e-6)  # PTQ4ViT: 0.16997 / 2^(b-1)
    codes = P.encode(x, p)
    negative = x < -p.scale / 2
    assert bool((codes[negative] < 8).all())  # range bit 0 = negative range
    assert bool((P.decode(codes, p)[negative] < 0).all())


def test_twin_uniform_uses_fine_range_for_small_values() -> None:
    p = P.QParams("twin_uniform", 4, torch.tensor(0.01), torch.tensor(0.0), torch.tensor(3.0))
    x = torch.tensor([0.0, 0.03, 0.07, 0.2, 0.5])
    codes = P.encode(x, p)
    assert codes.tolist() == [0, 3, 7, 8 + 3, 8 + 6]  # 0.2/0.08 = 2.5 -> 3; 0.5/0.08 = 6.25 -> 6
    assert P.decode_int(codes, p).tolist() == [0, 3, 7, 24, 48]


def test_v2sf_keeps_lsbs_of_small_and_msbs_of_large_values() -> None:
    p = P.fit(torch.softmax(torch.randn(8, 50) * 4, -1), 4, "v2sf")
    assert int(p.shift) == 3  # ratio 2^(b-1)
    signed = P.fit(torch.randn(100), 4, "v2sf")
    assert signed.signed
    codes = P.encode(torch.tensor([-1.0, 1.0]) * 100, signed)  # far outside: clipped to the field's ends
    assert P.decode_int(codes, signed).tolist() == [-4 * 8, 3 * 8]  # 3-bit two's complement field, << 3
    with pytest.raises(InputError, match="at least 3 bits"):
        P.fit(torch.randn(100), 2, "v2sf")


@pytest.mark.parametrize("kind", ["ptf", "o2sf"])
def test_channel_factors_give_outlier_channels_coarse_scales(kind: str) -> None:
    x = _data(kind)
    p = P.fit(x, 6, kind)
    assert p.shift.shape == (x.shape[-1],)
    assert int(p.shift[3]) == int(p.shift.max()) > 0  # the outlier channel gets the largest factor
    allowed = set(range(P.PTF_MAX_ALPHA + 1)) if kind == "ptf" else {0, int(p.shift.max())}
    assert set(p.shift.long().tolist()) <= allowed
    assert P.squared_error(x, p) < P.squared_error(x, P.fit(x, 6, "uniform"))


@pytest.mark.parametrize("method", P.METHODS)
def test_methods_fit_and_mse_is_no_worse_than_minmax(method: str) -> None:
    x = torch.randn(4000)
    x[0] = 30.0  # one outlier: clipping helps
    p = P.fit(x, 4, "uniform", method=method)
    if method != "minmax":
        assert P.squared_error(x, p) < P.squared_error(x, P.fit(x, 4, "uniform"))


def test_straight_through_gradient() -> None:
    x = torch.linspace(-1, 1, 41, requires_grad=True)
    p = P.fit(x.detach() * 0.5, 4, "uniform")  # half the range: the outer values clip
    P.fake_quantize(x, p).sum().backward()
    inside, outside = x.detach().abs() <= 0.4, x.detach().abs() >= 0.6  # range about ±0.5
    assert torch.equal(x.grad[inside], torch.ones(int(inside.sum())))
    assert bool((x.grad[outside] == 0).all())


@pytest.mark.parametrize("kind", ["log2", "twin_uniform", "v2sf", "ptf"])
def test_straight_through_gradient_non_uniform(kind: str) -> None:
    x = _data(kind).clone().requires_grad_(True)
    p = P.fit(x.detach(), 6, kind)
    P.fake_quantize(x, p).sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


@settings(max_examples=40, deadline=None)
@given(
    bits=st.sampled_from(BITS),
    values=st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=1, max_size=64),
)
def test_uniform_round_trip_property(bits: int, values: list[float]) -> None:
    x = torch.tensor(values)
    p = P.fit(x, bits, "uniform")
    codes = P.encode(x, p)
    assert torch.equal(P.encode(P.decode(codes, p), p), codes)  # codes survive a decode/encode round trip
    assert float((P.decode(codes, p) - x).abs().max()) <= float(p.scale) / 2 * (1 + 1e-5) + 1e-6


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from(BITS), kind=st.sampled_from(P.KINDS), seed=st.integers(0, 10_000))
def test_codes_survive_round_trip_property(bits: int, kind: str, seed: int) -> None:
    x = _data(kind, seed)
    p = P.fit(x, bits, kind).to(torch.float64)
    codes = P.encode(x, p)
    again = P.encode(P.decode(codes, p), p)
    # twin and v2sf write 0 in either range and fine values on the coarse grid may be re-encoded finer:
    # compare the decoded values, which must match exactly
    assert torch.equal(P.decode(again, p), P.decode(codes, p))


@pytest.mark.parametrize("bits", [1, 9, 0, 3.5, True])
def test_unsupported_bits(bits: object) -> None:
    with pytest.raises(InputError, match="unsupported bit width"):
        P.fit(torch.randn(10), bits, "uniform")  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="unknown quantizer kind"):
        P.fit(torch.randn(10), 4, "cubic")
    with pytest.raises(InputError, match="empty"):
        P.fit(torch.empty(0), 4)
    with pytest.raises(InputError, match="NaN"):
        P.fit(torch.tensor([1.0, math.nan]), 4)
    with pytest.raises(InputError, match="method"):
        P.fit(torch.randn(10), 4, method="kl")
    with pytest.raises(InputError, match="channel axis"):
        P.fit(torch.randn(10), 4, "ptf")


def test_quantization_error_weight_and_activation() -> None:
    w = torch.randn(16, 64) * 0.05
    errors = [P.quantization_error(w, b, role="weight") for b in (2, 3, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] > 0
    fq = P.fake_quantize(w, P.fit(w, 4, symmetric=True, axis=0, method=P.WEIGHT_METHOD))
    assert math.isclose(P.quantization_error(w, 4), float(((fq - w).double() ** 2).sum()), rel_tol=1e-9)
    a = torch.softmax(torch.randn(8, 64) * 3, -1)
    assert P.quantization_error(a, 4, role="activation", kind="log2") > 0
    with pytest.raises(InputError, match="role"):
        P.quantization_error(w, 4, role="bias")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="uniform only"):
        P.quantization_error(w, 4, kind="log2")
