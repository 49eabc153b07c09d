"""The fake-quant model's exact mode: the integer model's arithmetic, carried in float64 tensors.

``quant.set_exact_(model, True)`` (defined here) replaces every quantized module's forward with the function
of this module named after its op (``EXACT_OPS``: ``quantize``, ``linear``, ``conv2d``, ``matmul``,
``softmax``, ``gelu``, ``layernorm``, ``add``,
``scale``, ``mean``, ``rearrange``). Each one reads its float64 input as integers, runs the very kernels of
``quant.integer`` (same primitives, rounding and dyadic factors), and hands back float64 values again, so
the model's own (timm) forward strings them together. The values are exact in float64:

- a tensor the fake-quant model keeps in float is fixed point, X·2^−16 with |X| < 2^37 (< 2^53);
- a quantizer's output is ``P.decode_int(codes)`` = n·grid_step, and the quantizer that made it is kept beside
  it (``_streams``, keyed by the tensor's identity, held weakly), so its consumer recovers n = round(x/grid_step)
  exactly;
- q·2^−e (timm's power-of-two attention scale) is read with 16 + e fraction bits, without rounding.

So each quantization point's tensor divided by its grid step is the integer model's codes, element for
element; :func:`quant.integer.verify_bit_exact` checks it. Kernels are built once per module and rebuilt
when a quantizer is refitted or a weight changes.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from quant import intops
from quant import primitives as P
from quant.integer import (
    ACT_FRAC_BITS,
    FixedScale,
    IntAdd,
    IntEncoder,
    IntGemm,
    IntLayerNorm,
    IntMatMul,
    StreamToFixed,
    decoded_bound,
    fixed_mean,
    gelu_fixed,
    quantizer_params,
    softmax_fixed,
)
from quant.modules import (
    QuantAdd,
    QuantConv2d,
    QuantGELU,
    Quantizer,
    QuantLayerNorm,
    QuantLinear,
    QuantMatMul,
    QuantMean,
    QuantRearrange,
    QuantScale,
    QuantSoftmax,
)
from quant.tokens import class_attention

__all__ = [
    "EXACT_OPS",
    "add",
    "conv2d",
    "gelu",
    "layernorm",
    "linear",
    "matmul",
    "mean",
    "quantize",
    "rearrange",
    "recording",
    "scale",
    "set_exact_",
    "softmax",
]

#: The function of this module that runs each quantized module in exact mode (looked up by name at call time).
EXACT_OPS: dict[type[nn.Module], str] = {
    Quantizer: "quantize",
    QuantLinear: "linear",
    QuantConv2d: "conv2d",
    QuantMatMul: "matmul",
    QuantSoftmax: "softmax",
    QuantGELU: "gelu",
    QuantLayerNorm: "layernorm",
    QuantAdd: "add",
    QuantScale: "scale",
    QuantMean: "mean",
    QuantRearrange: "rearrange",
}


def _exact_forward(op: str) -> Callable[..., Tensor]:
    def forward(module: nn.Module, *args: Tensor) -> Tensor:
        return globals()[op](module, *args)

    forward.__name__ = f"exact_{op}"
    return forward


def set_exact_(model: nn.Module, exact: bool = True, *, recurse: bool = True) -> nn.Module:
    """Switch every quantized module of ``model`` (only ``model`` itself with ``recurse=False``) to or from
    this module's bit-exact arithmetic: its forward is replaced by ``EXACT_OPS``'s function, and ``exact`` set."""
    for module in model.modules() if recurse else [model]:
        op = next((name for cls, name in EXACT_OPS.items() if isinstance(module, cls)), None)
        if op is None:
            continue
        if exact:
            module.forward = types.MethodType(_exact_forward(op), module)
        else:
            module.__dict__.pop("forward", None)
        module.exact = exact
    return model


# ------------------------------------------------------------------------------------------ code recording

Recorder = Callable[[Any, Tensor], None]
_recorder: ContextVar[Recorder | None] = ContextVar("mixbit_exact_recorder", default=None)


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """Within the block, every quantization point computed in exact mode calls ``recorder(quantizer, codes)``."""
    token = _recorder.set(recorder)
    try:
        yield
    finally:
        _recorder.reset(token)


def record(quantizer: Any, codes: Tensor) -> None:
    """Report ``codes`` of ``quantizer`` to the active recorder, if any."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder(quantizer, codes)


_streams: WeakIdKeyDictionary = WeakIdKeyDictionary()
"""The quantizer whose decoded codes a tensor holds, keyed by the tensor itself (by identity, weakly: an entry
goes with its tensor). A tensor derived from it (a view, a sum) has no entry and is read as fixed point."""
_MAX_EXTRA_FRAC_BITS = 24  # finer grids tried when reading a float64 operand exactly (q·2^-e)
_ONE = 2.0**ACT_FRAC_BITS

K = TypeVar("K")
_cache: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def _cached(owner: Any, key: Hashable, build: Callable[[], K]) -> K:
    """A kernel of ``owner`` for ``key`` (which includes the versions it depends on), built on first use."""
    slot = _cache.setdefault(owner, {})
    if key not in slot:
        if len(slot) > 16:  # stale versions of a refitted quantizer
            slot.clear()
        slot[key] = build()
    return slot[key]


def _version(quantizer: Any) -> tuple[int, int]:
    return quantizer.version, int(quantizer.calibrated)


def _weights_version(module: Any) -> tuple[Any, ...]:
    bias = module.bias._version if module.bias is not None else -1
    return (_version(module.input_quant), module.weight_quant.version, module.weight._version, bias)


# ------------------------------------------------------------------------------------ float64 <-> integers


def _fixed(x: Tensor) -> Tensor:
    """Fixed-point integers of a float tensor: ⌊x·2^16 + 0.5⌋ (exact for tensors already on the grid)."""
    tagged = _streams.get(x)
    if tagged is not None:
        return _stream_to_fixed(x, tagged)
    return torch.floor(x.to(torch.float64) * _ONE + 0.5).to(torch.int64)


def _exact_int(x: Tensor) -> tuple[Tensor, int]:
    """(X, f) with x = X·2^−f exactly for the smallest f ≥ 16 that makes it so; else (⌊x·2^16 + 0.5⌋, 16)."""
    if _streams.get(x) is not None:
        return _fixed(x), ACT_FRAC_BITS
    x = x.to(torch.float64)
    for frac_bits in range(ACT_FRAC_BITS, ACT_FRAC_BITS + _MAX_EXTRA_FRAC_BITS + 1):
        scaled = x * 2.0**frac_bits
        if bool((scaled == torch.floor(scaled)).all()):
            return scaled.to(torch.int64), frac_bits
    return _fixed(x), ACT_FRAC_BITS


def _codes_of(x: Tensor, quantizer: Any) -> Tensor:
    """The codes behind a quantizer's decoded output: n = round(x/grid_step), then back to codes."""
    params = quantizer_params(quantizer)
    if params.kind != "uniform" or params.scale.dim() > 0:
        raise ValueError("exact mode: only per-tensor uniform quantizer outputs can feed another op")
    n = torch.floor(x.to(torch.float64) / float(P.grid_step(params)) + 0.5).to(torch.int64)
    return n + int(params.zero_point)


def _stream_to_fixed(x: Tensor, quantizer: Any) -> Tensor:
    params = quantizer_params(quantizer)
    convert = _cached(quantizer, ("stream", _version(quantizer)), lambda: StreamToFixed.build(params))
    return convert(_codes_of(x, quantizer))


def _decoded(codes: Tensor, quantizer: Any) -> Tensor:
    """Float64 values of a quantizer's codes, tagged with the quantizer."""
    params = quantizer_params(quantizer)
    values = P.decode(codes, params)
    _streams[values] = quantizer
    return values


def _from_fixed(x: Tensor) -> Tensor:
    return x.to(torch.float64) / _ONE


def _encoder(quantizer: Any, frac_bits: int) -> IntEncoder:
    return _cached(
        quantizer,
        ("encoder", frac_bits, _version(quantizer)),
        lambda: IntEncoder.build(quantizer_params(quantizer), frac_bits),
    )


# ------------------------------------------------------------------------------------------------ the ops


def quantize(quantizer: Any, x: Tensor) -> Tensor:
    """A ``Quantizer`` called on its own: encode the (fixed-point) input, return its decoded codes."""
    integers, frac_bits = _exact_int(x)
    codes = _encoder(quantizer, frac_bits)(integers)
    record(quantizer, codes)
    return _decoded(codes, quantizer)


def _gemm(module: Any) -> IntGemm:
    low = module.input_quant.low if module.input_quant.token_split is not None else None
    key = ("gemm", _weights_version(module), None if low is None else _version(low))
    return _cached(module, key, lambda: IntGemm.build("", module))


def linear(module: Any, x: Tensor) -> Tensor:
    """``QuantLinear``: encode the input, integer GEMM, requantize to fixed point, add the bias. A token-split
    input (``quant.tokens``) runs both groups' GEMMs and keeps each token's from its group, as the integer model."""
    gemm = _gemm(module)
    integers, frac_bits = _exact_int(x)
    codes = _encoder(module.input_quant, frac_bits)(integers)
    if gemm.low is not None:
        low_codes = _encoder(module.input_quant.low, frac_bits)(integers)
        point, mask = gemm.split_tokens(codes, low_codes, class_attention())
        record(module.input_quant, point)
        record(module.input_quant.low, mask.to(torch.int64))
        return _from_fixed(gemm.split_output(mask, gemm.accumulate(codes), gemm.low.accumulate(low_codes)))
    record(module.input_quant, codes)
    return _from_fixed(gemm.output(gemm.accumulate(codes)))


def conv2d(module: Any, x: Tensor) -> Tensor:
    """``QuantConv2d`` patch embedding: the image is encoded (the float→int boundary), then a GEMM on patches."""
    gemm = _gemm(module)
    codes = P.encode(x, module.input_quant.qparams())
    record(module.input_quant, codes)
    out = gemm.output(gemm.accumulate(gemm.patches(codes)))
    batch, _, height, width = codes.shape
    kh, kw = gemm.kernel  # type: ignore[misc]
    out = out.reshape(batch, height // kh, width // kw, -1).permute(0, 3, 1, 2)
    return _from_fixed(out)


def matmul(module: Any, a: Tensor, b: Tensor) -> Tensor:
    """``QuantMatMul``: both operands encoded, integer GEMM, requantized to fixed point."""
    (a_int, a_frac), (b_int, b_frac) = _exact_int(a), _exact_int(b)
    k = a.shape[-1]
    key = ("matmul", k, _version(module.a_quant), _version(module.b_quant))
    kernel = _cached(module, key, lambda: IntMatMul.build("", module, k))
    a_codes = _encoder(module.a_quant, a_frac)(a_int)
    b_codes = _encoder(module.b_quant, b_frac)(b_int)
    record(module.a_quant, a_codes)
    record(module.b_quant, b_codes)
    return _from_fixed(intops.requantize(kernel.accumulate(a_codes, b_codes), kernel.mantissa, kernel.shift))


def softmax(module: Any, x: Tensor) -> Tensor:
    """``QuantSoftmax``: Shiftmax of fixed-point logits over the last axis."""
    if module.dim not in (-1, x.dim() - 1):
        raise ValueError(f"exact mode: softmax over dim {module.dim} (only the last axis)")
    return _from_fixed(softmax_fixed(_fixed(x)))


def gelu(module: Any, x: Tensor) -> Tensor:
    """``QuantGELU``: ShiftGELU of a fixed-point input."""
    return _from_fixed(gelu_fixed(_fixed(x)))


def layernorm(module: Any, x: Tensor) -> Tensor:
    """``QuantLayerNorm``: I-LayerNorm on the residual stream's integers, affine-requantized to fixed point."""
    quantizer = _streams.get(x)
    if quantizer is None:  # a fixed-point input: its integers on the 2^-16 grid
        norm = _cached(module, ("ln", None, _ln_version(module)), lambda: IntLayerNorm.build("", module, 1 / _ONE))
        return _from_fixed(norm(_fixed(x)))
    params = quantizer_params(quantizer)
    key = ("ln", id(quantizer), _version(quantizer), _ln_version(module))
    norm = _cached(
        module, key, lambda: IntLayerNorm.build("", module, float(P.grid_step(params)), decoded_bound(params))
    )
    return _from_fixed(norm(P.decode_int(_codes_of(x, quantizer), params)))


def _ln_version(module: Any) -> tuple[int, int]:
    weight = module.weight._version if module.weight is not None else -1
    bias = module.bias._version if module.bias is not None else -1
    return weight, bias


def add(module: Any, a: Tensor, b: Tensor) -> Tensor:
    """``QuantAdd``: both operands in fixed point (a residual operand requantized from its codes), added,
    encoded by ``output_quant``; returns the decoded residual stream."""
    kernel = _cached(module, ("add", _version(module.output_quant)), lambda: IntAdd.build("", module))
    codes = kernel(_fixed(a), _fixed(b))
    record(module.output_quant, codes)
    return _decoded(codes, module.output_quant)


def scale(module: Any, x: Tensor) -> Tensor:
    """``QuantScale``: a power-of-two constant multiplies exactly (the consumer reads the finer grid), any other
    is the integer model's dyadic requantization of the fixed-point input."""
    kernel = _cached(module, ("scale", module.scale), lambda: FixedScale.build(module.scale))
    if kernel.dyadic is None:
        return x.to(torch.float64) * module.scale
    return _from_fixed(kernel(_fixed(x)))


def mean(module: Any, x: Tensor) -> Tensor:
    """``QuantMean``: the fixed-point mean over ``module.dim``, rounded half up (``quant.integer.fixed_mean``)."""
    return _from_fixed(fixed_mean(_fixed(x), module.dim, module.keepdim))


def rearrange(module: Any, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``QuantRearrange``: ``fn(x)``, still tagged with the residual-stream quantizer ``x`` holds (if any)."""
    out = fn(x)
    tagged = _streams.get(x)
    if tagged is not None:
        _streams[out] = tagged
    return out
