"""Quantization primitives shared by the fake-quant model and the integer-only path.

One rounding rule everywhere: **round half up**, ``round(t) = floor(t + 0.5)``. It is what a dyadic
requantization ``(acc·m + 2^(s−1)) >> s`` computes, so the integer path reproduces it with a shift.
(``torch.round`` rounds half to even and is not used anywhere in ``quant``.)

Every quantizer kind encodes a float tensor ``x`` into integer **codes** (b bits each) and decodes them as
``x̂ = decode_int(codes) · grid_step``: an integer ``n`` on a uniform grid of step ``grid_step``. That is
the contract for the integer path: a GEMM on quantized inputs is an integer GEMM on the ``n`` values
times the product of the grid steps, whatever the kind. The kinds (b = bits):

``uniform``
    codes ``q ∈ [qmin, qmax]``; ``n = q − zero_point``; grid step ``scale``. Symmetric (weights, per
    output channel): ``q ∈ [−(2^(b−1)−1), 2^(b−1)−1]``, zero point 0. Asymmetric (activations, per
    tensor): ``q ∈ [0, 2^b−1]``, integer zero point in that range.
``log2`` (FQ-ViT, post-Softmax)
    ``q = clamp(round(−log2(x/scale)), 0, Z)`` with Z = ``log2_zero_code(b)`` = min(2^b−1, 31) the code
    of exact zero (x ≤ 0 or q ≥ Z). ``x̂ = scale·2^−q``. On the grid ``scale·2^−(Z−1)``:
    ``n = 2^(Z−1−q)`` (``1 << (Z−1−q)``), 0 for code Z. Shifts are capped at 30 so that ``Σ v·n`` over
    2^20 terms of 8-bit ``v`` stays exact in int64 (8 + 30 + 20 < 63). Integer encode without logs:
    ``q = k`` iff ``2^−(2k+1) < (x/scale)² ≤ 2^−(2k−1)``.
``twin_uniform`` (PTQ4ViT)
    code = range bit ``h`` (the top bit) and a (b−1)-bit magnitude ``u``; fine step ``scale``, coarse
    step ``scale·2^shift``. Unsigned layout (data ≥ 0, post-Softmax): ``n = u << (shift·h)``; the fine
    range is used when ``round(x/scale) ≤ 2^(b−1)−1``. Signed layout (post-GELU): ``h = 0`` is the
    negative range ``n = −u`` with step ``scale = max(0.16997, −min)/2^(b−1)`` (PTQ4ViT's fixed GELU
    step; 0.16997 = −min GELU), ``h = 1`` the positive range ``n = u << shift``.
``v2sf`` (TSPTQ-ViT value-aware two scales)
    the same code layout, with the ratio fixed at ``2^(b−1)``: a large value keeps the most significant
    b−1 bits of a (2b−2)-bit value, a small one the least significant. Signed data: the (b−1)-bit field
    is two's complement, ``f ∈ [−2^(b−2), 2^(b−2)−1]``, ``n = f << ((b−1)·h)`` (needs b ≥ 3).
``ptf`` (FQ-ViT power-of-two factor) and ``o2sf`` (TSPTQ-ViT outlier-aware two scales)
    per-channel (last axis) factors ``α_c``: ``q = clamp(round(x/(scale·2^α_c)) + zero_point, 0, 2^b−1)``,
    ``n = (q − zero_point) << α_c``; one shared scale and zero point. PTF: ``α_c ∈ {0..3}``; O-2SF:
    ``α_c ∈ {0, k}`` (outlier channels of a LayerNorm output get the coarse scale).

Straight-through estimator: ``fake_quantize`` passes gradients through rounding unchanged (and clamping
zeroes them outside the range), so training and Hessian-vector products see a usable gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from quant.errors import InputError

__all__ = [
    "ACT_KINDS",
    "GELU_MIN",
    "KINDS",
    "METHODS",
    "QParams",
    "check_bits",
    "decode",
    "decode_int",
    "encode",
    "fake_quantize",
    "fit",
    "grid_step",
    "log2_zero_code",
    "quantization_error",
    "round_half_up",
    "round_ste",
    "squared_error",
]

Kind = Literal["uniform", "log2", "twin_uniform", "v2sf", "o2sf", "ptf"]
Method = Literal["minmax", "percentile", "mse"]

KINDS: tuple[str, ...] = ("uniform", "log2", "twin_uniform", "v2sf", "o2sf", "ptf")
ACT_KINDS: tuple[str, ...] = (*KINDS, "auto")
METHODS: tuple[str, ...] = ("minmax", "percentile", "mse")
MIN_BITS, MAX_BITS = 2, 8
GELU_MIN = 0.16997  # −min over x of x·Φ(x), PTQ4ViT (Yuan et al., ECCV 2022) fixed post-GELU negative range
PTF_MAX_ALPHA = 3  # FQ-ViT (Lin et al., IJCAI 2022): α_c ∈ {0, 1, 2, 3}
LOG2_MAX_SHIFT = 30  # cap on log2 shifts, keeps integer attention sums exact in int64 (see module docstring)
PERCENTILE = 99.99  # percent; the "percentile" method clips at this percentile (and 100 − it below)
_EPS = 1e-8  # smallest range used for a scale, so an all-zero tensor gets a finite scale
_MSE_RATIOS = 24  # clipping ratios tried by the "mse" method


def check_bits(bits: int, where: str = "bits") -> int:
    """Return ``bits`` if it is an int in 2..8, else raise ``InputError`` naming ``where``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise InputError(f"{where}: unsupported bit width {bits!r}; must be an integer from {MIN_BITS} to {MAX_BITS}")
    return bits


def _check_kind(kind: str, where: str = "kind") -> str:
    if kind not in KINDS:
        raise InputError(f"{where}: unknown quantizer kind {kind!r}; choose from {', '.join(KINDS)}")
    return kind


def round_half_up(t: Tensor) -> Tensor:
    """``floor(t + 0.5)``: the one rounding rule of mixbit (ties go up, as a rounding right shift does)."""
    return torch.floor(t + 0.5)


def round_ste(t: Tensor) -> Tensor:
    """``round_half_up`` in the forward pass, identity gradient in the backward pass."""
    return t + (round_half_up(t) - t).detach()


def log2_zero_code(bits: int) -> int:
    """The log2 code that means exactly zero: min(2^bits − 1, LOG2_MAX_SHIFT + 1)."""
    return min(2**bits - 1, LOG2_MAX_SHIFT + 1)


@dataclass(frozen=True)
class QParams:
    """A fitted quantizer. Tensors are 0-d (per tensor) or 1-d along ``axis`` (per channel).

    ``scale``: grid step of the fine range (for ``log2``: the value of code 0). ``zero_point``: integer
    code of 0.0 (``uniform``, ``ptf``, ``o2sf``; 0 elsewhere). ``shift``: power-of-two exponent, integer
    valued — twin/v2sf ratio of coarse to fine step, ptf/o2sf per-channel α_c, unused (0) for uniform and
    log2. ``signed``: signed codes (symmetric uniform) or the signed layout of twin/v2sf.
    """

    kind: str
    bits: int
    scale: Tensor
    zero_point: Tensor
    shift: Tensor
    signed: bool = False
    axis: int | None = None

    def to(self, dtype: torch.dtype) -> QParams:
        """The same quantizer with float tensors of ``dtype`` (float64 for the exact path)."""
        return replace(self, scale=self.scale.to(dtype), zero_point=self.zero_point.to(dtype))

    @property
    def code_range(self) -> tuple[int, int]:
        """(qmin, qmax) of the stored codes."""
        if self.kind == "uniform" and self.signed:
            return -(2 ** (self.bits - 1) - 1), 2 ** (self.bits - 1) - 1
        if self.kind == "log2":
            return 0, log2_zero_code(self.bits)
        return 0, 2**self.bits - 1


def _view(t: Tensor, like: Tensor, axis: int | None) -> Tensor:
    """Reshape a 0-d or per-channel tensor to broadcast against ``like`` along ``axis``."""
    if t.dim() == 0 or axis is None:
        return t
    shape = [1] * like.dim()
    shape[axis] = -1
    return t.reshape(shape)


def _encode_float(x: Tensor, p: QParams, rnd=round_half_up) -> Tensor:
    """Codes as a float tensor holding integers (differentiable through ``rnd`` when it is ``round_ste``)."""
    scale = _view(p.scale, x, p.axis)
    zp = _view(p.zero_point, x, p.axis)
    shift = _view(p.shift.to(x.dtype), x, p.axis)
    b = p.bits
    if p.kind == "uniform":
        qmin, qmax = p.code_range
        return torch.clamp(rnd(x / scale) + zp, qmin, qmax)
    if p.kind in ("ptf", "o2sf"):
        return torch.clamp(rnd(x / (scale * torch.exp2(shift))) + zp, 0, 2**b - 1)
    if p.kind == "log2":
        zero = log2_zero_code(b)
        t = x / scale
        positive = t > 0
        q = rnd(-torch.log2(torch.where(positive, t, torch.ones_like(t))))
        q = torch.clamp(q, 0, zero)
        return torch.where(positive, q, torch.full_like(q, zero))
    # twin_uniform / v2sf: top bit h picks the range, the low b−1 bits hold the field
    half = 2 ** (b - 1)
    t = x / scale
    coarse = t / torch.exp2(shift)
    if p.signed and p.kind == "twin_uniform":  # h = 0: negative range (−u), h = 1: positive range (u << shift)
        u_neg = torch.clamp(rnd(-t), 0, half - 1)
        u_pos = torch.clamp(rnd(coarse), 0, half - 1)
        return torch.where(t < 0, u_neg, u_pos + half)
    if p.signed:  # v2sf signed: two's complement field f ∈ [−2^(b−2), 2^(b−2)−1]
        lo, hi = -(2 ** (b - 2)), 2 ** (b - 2) - 1
        fine = rnd(t)
        use_fine = (fine >= lo) & (fine <= hi)
        f = torch.where(use_fine, fine, torch.clamp(rnd(coarse), lo, hi))
        return torch.where(f < 0, f + half, f) + torch.where(use_fine, 0.0, float(half))
    fine = torch.clamp(rnd(t), min=0)
    use_fine = fine <= half - 1
    u = torch.where(use_fine, fine, torch.clamp(rnd(coarse), 0, half - 1))
    return u + torch.where(use_fine, 0.0, float(half))


def _decode_n_float(codes: Tensor, p: QParams) -> Tensor:
    """``decode_int`` computed in the float dtype of ``codes`` (exact: every n has |n| < 2^31)."""
    zp = _view(p.zero_point, codes, p.axis)
    shift = _view(p.shift.to(codes.dtype), codes, p.axis)
    b = p.bits
    if p.kind == "uniform":
        return codes - zp
    if p.kind in ("ptf", "o2sf"):
        return (codes - zp) * torch.exp2(shift)
    if p.kind == "log2":
        zero = log2_zero_code(b)
        n = torch.exp2((zero - 1) - codes)
        return torch.where(codes >= zero, torch.zeros_like(n), n)
    half = 2 ** (b - 1)
    h = (codes >= half).to(codes.dtype)
    field = codes - h * half
    if p.signed and p.kind == "twin_uniform":
        return torch.where(h > 0, field * torch.exp2(shift), -field)
    if p.signed:
        field = torch.where(field >= half // 2, field - half, field)
    return field * torch.exp2(shift * h)


def grid_step(p: QParams) -> Tensor:
    """The step of the integer grid the codes decode onto: ``x̂ = decode_int(codes) · grid_step``."""
    if p.kind == "log2":
        return p.scale * 2.0 ** -(log2_zero_code(p.bits) - 1)
    return p.scale


def encode(x: Tensor, p: QParams) -> Tensor:
    """Integer codes (int64) of ``x`` under ``p``; see the module docstring for each kind's layout."""
    return _encode_float(x.to(p.scale.dtype), p).to(torch.int64)


def decode_int(codes: Tensor, p: QParams) -> Tensor:
    """The integers ``n`` (int64) the codes stand for on the grid ``grid_step(p)``; integer ops only."""
    codes = codes.to(torch.int64)
    zp = _view(p.zero_point, codes, p.axis).to(torch.int64)
    shift = _view(p.shift.to(torch.int64), codes, p.axis)
    b = p.bits
    if p.kind == "uniform":
        return codes - zp
    if p.kind in ("ptf", "o2sf"):
        return (codes - zp) << shift
    if p.kind == "log2":
        zero = log2_zero_code(b)
        n = torch.ones_like(codes) << torch.clamp((zero - 1) - codes, min=0)
        return torch.where(codes >= zero, torch.zeros_like(n), n)
    half = 2 ** (b - 1)
    h = codes >> (b - 1)
    field = codes & (half - 1)
    if p.signed and p.kind == "twin_uniform":
        return torch.where(h > 0, field << shift, -field)
    if p.signed:
        field = torch.where(field >= half // 2, field - half, field)
    return field << (shift * h)


def decode(codes: Tensor, p: QParams) -> Tensor:
    """Float values of the codes: ``decode_int(codes) · grid_step(p)``, in ``p``'s float dtype."""
    n = _decode_n_float(codes.to(p.scale.dtype), p)
    return n * _view(grid_step(p), n, p.axis)


def fake_quantize(x: Tensor, p: QParams) -> Tensor:
    """``decode(encode(x))`` in ``x``'s dtype, with straight-through gradients for the rounding."""
    q = p if p.scale.dtype == x.dtype else p.to(x.dtype)
    n = _decode_n_float(_encode_float(x, q, rnd=round_ste), q)
    return n * _view(grid_step(q), n, q.axis)


def squared_error(x: Tensor, p: QParams) -> float:
    """‖Q(x) − x‖² (sum of squared error) under ``p``."""
    with torch.no_grad():
        return float(((fake_quantize(x, p) - x).double() ** 2).sum())


# ----------------------------------------------------------------------------------------------- fitting


def _reduce_dims(x: Tensor, axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.dim()))
    axis = axis % x.dim()
    return tuple(d for d in range(x.dim()) if d != axis)


def _channel_view(x: Tensor, axis: int) -> Tensor:
    """``x`` as (channels, everything else)."""
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def _range(x: Tensor, method: str, axis: int | None) -> tuple[Tensor, Tensor]:
    """(lo, hi) per tensor or per channel; percentile clips the tails of a (sub)sample."""
    flat = x.reshape(1, -1) if axis is None else _channel_view(x, axis)
    if method == "percentile":
        if flat.shape[1] > 1 << 20:  # quantile sorts; an even subsample keeps it fast
            flat = flat[:, :: math.ceil(flat.shape[1] / (1 << 20))]
        q = torch.tensor([1 - PERCENTILE / 100, PERCENTILE / 100], dtype=flat.dtype)
        lo, hi = torch.quantile(flat.float(), q.float(), dim=1).to(flat.dtype)
    else:
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    if axis is None:
        return lo[0], hi[0]
    return lo, hi


def _uniform_from_range(lo: Tensor, hi: Tensor, bits: int, symmetric: bool, axis: int | None) -> QParams:
    zeros = torch.zeros_like(lo)
    if symmetric:
        amax = torch.maximum(lo.abs(), hi.abs()).clamp(min=_EPS)
        scale = amax / (2 ** (bits - 1) - 1)
        return QParams("uniform", bits, scale, zeros, zeros, signed=True, axis=axis)
    lo, hi = torch.minimum(lo, zeros), torch.maximum(hi, zeros)
    levels = 2**bits - 1
    scale = (hi - lo).clamp(min=_EPS) / levels
    zp = torch.clamp(round_half_up(-lo / scale), 0, levels)
    return QParams("uniform", bits, scale, zp, zeros, signed=False, axis=axis)


def _per_channel_error(x: Tensor, p: QParams) -> Tensor:
    """Squared error per channel of ``p.axis`` (per tensor: a 0-d tensor)."""
    err = (fake_quantize(x, p) - x) ** 2
    return err.sum(dim=_reduce_dims(x, p.axis))


def _fit_uniform(x: Tensor, bits: int, method: str, symmetric: bool, axis: int | None) -> QParams:
    lo, hi = _range(x, "percentile" if method == "percentile" else "minmax", axis)
    best = _uniform_from_range(lo, hi, bits, symmetric, axis)
    if method != "mse":
        return best
    best_err = _per_channel_error(x, best)
    for ratio in torch.linspace(1.0, 0.2, _MSE_RATIOS)[1:].tolist():
        cand = _uniform_from_range(lo * ratio, hi * ratio, bits, symmetric, axis)
        err = _per_channel_error(x, cand)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = replace(
            best,
            scale=torch.where(better, cand.scale, best.scale),
            zero_point=torch.where(better, cand.zero_point, best.zero_point),
        )
    return best


def _search(x: Tensor, candidates: list[QParams]) -> QParams:
    """The candidate with the least total squared error on ``x``."""
    errors = [squared_error(x, c) for c in candidates]
    return candidates[min(range(len(candidates)), key=errors.__getitem__)]


def _scalar(v: float, dtype: torch.dtype) -> Tensor:
    return torch.tensor(v, dtype=dtype)


def _ratios(method: str) -> list[float]:
    """Multipliers of the fitted range tried: none for min-max/percentile, a grid for MSE."""
    return [1.0] if method != "mse" else torch.linspace(1.0, 0.25, 12).tolist()


def _fit_log2(x: Tensor, bits: int, method: str) -> QParams:
    _, hi = _range(x, method, None)
    hi = float(hi.clamp(min=_EPS))
    z = _scalar(0.0, x.dtype)
    return _search(x, [QParams("log2", bits, _scalar(hi * r, x.dtype), z, z) for r in _ratios(method)])


def _fit_two_range(x: Tensor, bits: int, method: str, kind: str) -> QParams:
    """twin_uniform and v2sf: fit the coarse range to the data, then the fine step (twin: by error over shifts)."""
    lo, hi = (float(v) for v in _range(x, method, None))
    hi = max(hi, _EPS)
    half = 2 ** (bits - 1)
    z = _scalar(0.0, x.dtype)
    signed = lo < 0
    candidates: list[QParams] = []
    for r in _ratios(method):
        top = hi * r
        if kind == "twin_uniform" and signed:
            fine = (GELU_MIN if -lo <= GELU_MIN * 1.001 else -lo) / half  # GELU's own floor, up to sampling
            cover = max(0, math.ceil(math.log2(max(top / ((half - 1) * fine), 1.0)))) if half > 1 else 0
            shifts = range(max(0, cover - 3), cover + 1)
            candidates += [QParams(kind, bits, _scalar(fine, x.dtype), z, _scalar(m, x.dtype), True) for m in shifts]
        elif kind == "twin_uniform":
            coarse = top / max(half - 1, 1)
            candidates += [
                QParams(kind, bits, _scalar(coarse / 2**m, x.dtype), z, _scalar(m, x.dtype)) for m in range(0, 11)
            ]
        elif signed:  # v2sf, two's complement field
            if bits < 3:
                raise InputError("v2sf on data with negative values needs at least 3 bits")
            fhalf = 2 ** (bits - 2)
            coarse = max(top / (fhalf - 1), -lo * r / fhalf, _EPS)
            candidates.append(QParams(kind, bits, _scalar(coarse / half, x.dtype), z, _scalar(bits - 1, x.dtype), True))
        else:
            coarse = top / max(half - 1, 1)
            candidates.append(QParams(kind, bits, _scalar(coarse / half, x.dtype), z, _scalar(bits - 1, x.dtype)))
    return _search(x, candidates)


def _fit_channel_factors(x: Tensor, bits: int, method: str, kind: str) -> QParams:
    """ptf (α_c ∈ 0..3) and o2sf (α_c ∈ {0, k}): shared scale and zero point, per-channel shift by least error."""
    if x.dim() < 2:
        raise InputError(f"{kind} needs a channel axis (last dimension); got a tensor of shape {tuple(x.shape)}")
    axis = -1
    lo, hi = (float(v) for v in _range(x, method, None))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2**bits - 1
    channels = x.shape[-1]
    options = [[0, 1, 2, 3]] if kind == "ptf" else [[0, k] for k in range(1, 7)]
    best: QParams | None = None
    best_err = math.inf
    for r in _ratios(method):
        for alphas in options:
            top = max(alphas)
            scale = max(hi - lo, _EPS) * r / levels / 2**top
            zp = min(max(math.floor(-lo / (hi - lo + _EPS) * levels + 0.5), 0), levels)
            per_alpha = []
            for a in alphas:
                shift = torch.full((channels,), float(a), dtype=x.dtype)
                p = QParams(kind, bits, _scalar(scale, x.dtype), _scalar(zp, x.dtype), shift, axis=axis)
                per_alpha.append(_per_channel_error(x, p))
            errs = torch.stack(per_alpha)
            choice = errs.argmin(dim=0)
            shift = torch.tensor(alphas, dtype=x.dtype)[choice]
            err = float(errs.min(dim=0).values.sum())
            if err < best_err:
                best_err = err
                best = QParams(kind, bits, _scalar(scale, x.dtype), _scalar(zp, x.dtype), shift, axis=axis)
    assert best is not None
    return best


def fit(
    x: Tensor,
    bits: int,
    kind: str = "uniform",
    *,
    method: str = "minmax",
    symmetric: bool = False,
    axis: int | None = None,
) -> QParams:
    """Fit a quantizer of ``kind`` and ``bits`` to ``x``.

    ``method``: ``minmax`` (full range), ``percentile`` (clips at ``PERCENTILE``), ``mse`` (range
    multipliers searched for least squared error). ``symmetric``/``axis`` apply to ``uniform`` (weights:
    ``symmetric=True, axis=0``); ptf/o2sf always use the last axis as channels.
    """
    check_bits(bits)
    _check_kind(kind)
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if x.numel() == 0:
        raise InputError("cannot fit a quantizer to an empty tensor")
    if not torch.isfinite(x).all():
        raise InputError("cannot fit a quantizer to data with NaN or infinite values")
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    with torch.no_grad():
        if kind == "uniform":
            return _fit_uniform(x, bits, method, symmetric, axis)
        if kind == "log2":
            return _fit_log2(x, bits, method)
        if kind in ("twin_uniform", "v2sf"):
            return _fit_two_range(x, bits, method, kind)
        return _fit_channel_factors(x, bits, method, kind)


WEIGHT_METHOD = "mse"  # how quantize_ fits weight quantizers unless its config says otherwise


def quantization_error(
    x: Tensor,
    bits: int,
    *,
    role: Literal["weight", "activation"] = "weight",
    kind: str = "uniform",
    method: str | None = None,
) -> float:
    """‖Q(x) − x‖² (sum of squared error) with the quantizer ``quantize_`` would use.

    ``role="weight"``: symmetric per output channel (axis 0), fitted by ``WEIGHT_METHOD`` (MSE clipping).
    ``role="activation"``: per tensor (ptf/o2sf per last-axis channel), fitted by min-max.
    """
    if role == "weight":
        if kind != "uniform":
            raise InputError(f"weights are quantized uniform only; got kind {kind!r}")
        axis = 0 if x.dim() > 1 else None
        p = fit(x, bits, "uniform", method=method or WEIGHT_METHOD, symmetric=True, axis=axis)
    elif role == "activation":
        p = fit(x, bits, kind, method=method or "minmax")
    else:
        raise InputError(f"unknown role {role!r}; choose weight or activation")
    return squared_error(x.detach().float() if not x.is_floating_point() else x.detach(), p)
