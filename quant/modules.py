"""Quantized modules: fake-quant GEMMs, the ops between them, and the quantizers they hold.

Quantization points of a ViT block (names relative to the block; see ``quantize_``)::

    x ─► norm1 ─► attn.qkv.input_quant ─► qkv ─► q: attn.matmul_qk.a_quant ┐
                                                k: attn.matmul_qk.b_quant ┴► matmul_qk ─► softmax
         softmax ─► attn.matmul_av.a_quant ┐                                     (the probabilities)
         v:         attn.matmul_av.b_quant ┴► matmul_av ─► attn.proj.input_quant ─► proj
    x + proj ─► add1.output_quant ─► norm2 ─► mlp.fc1.input_quant ─► fc1 ─► act (GELU)
         ─► mlp.fc2.input_quant ─► fc2;  x + fc2 ─► add2.output_quant

So the LayerNorm output is quantized by its consumer's ``input_quant`` (qkv, fc1, head, Swin's
``reduction``), the post-GELU by ``fc2.input_quant``, the post-Softmax by ``matmul_av.a_quant``; the
residual stream by each ``QuantAdd.output_quant`` (ViT: also ``pos_add`` after the position embedding).

Every module here has ``exact: bool = False``, a flag ``quant.exact.set_exact_`` sets when it replaces the
module's forward with ``quant.exact.<op>`` (the integer model's arithmetic in float64). The forwards below are
the fake-quant ones only: exact mode registers its own, and this module does not import it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quant import primitives as P
from quant.tokens import TokenSplit, class_attention

__all__ = [
    "QuantAdd",
    "QuantConv2d",
    "QuantGELU",
    "QuantLayerNorm",
    "QuantLinear",
    "QuantMatMul",
    "QuantMean",
    "QuantRearrange",
    "QuantScale",
    "QuantSoftmax",
    "Quantizer",
]

_MAX_OBSERVED = 1 << 18  # elements a quantizer keeps from calibration batches (rows of its last axis)


class Quantizer(nn.Module):
    """Fake-quantizes a tensor with one ``quant.primitives`` quantizer.

    Buffers (read by the integer path; meaning per kind in ``quant.primitives``):
    ``scale`` float32, 0-d or (channels,) — fine grid step (log2: value of code 0);
    ``zero_point`` int64, same shape as ``scale`` — code of 0.0 (0 for symmetric, log2, twin, v2sf);
    ``shift`` int64, 0-d or (channels,) — power-of-two exponent (twin/v2sf coarse ratio; ptf/o2sf α_c);
    ``bits`` int64 0-d. Extra state: ``kind`` (the fitted ``primitives.KINDS`` name),
    ``requested_kind`` (what the config asked for; ``"auto"`` lets calibration pick ``kind``), ``signed``,
    ``axis`` (channel axis: 0 for weights, −1 for ptf/o2sf, None per tensor), ``calibrated``.
    Until calibrated the quantizer passes its input through unchanged. ``fake_quantize`` in
    ``quant.primitives`` with ``qparams()`` is all its forward does, unless the point is token-split
    (``set_token_split``): then a ``low`` quantizer (a submodule, fitted on the same observations) takes the tokens
    ``token_split`` does not keep high (``quant.tokens``), and the forward picks per token.
    """

    exact: bool = False

    def __init__(self, bits: int = 8, kind: str = "uniform", *, symmetric: bool = False) -> None:
        super().__init__()
        self.register_buffer("bits", torch.tensor(P.check_bits(bits), dtype=torch.int64))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("shift", torch.tensor(0, dtype=torch.int64))
        if kind not in P.ACT_KINDS:
            from quant.errors import InputError

            raise InputError(f"unknown quantizer kind {kind!r}; choose from {', '.join(P.ACT_KINDS)}")
        self.requested_kind = kind  # may be "auto": calibration picks ``kind`` by least error
        self.kind = "uniform" if kind == "auto" else kind
        self.signed = symmetric  # symmetric codes are signed; a weight quantizer's axis is set when it is fitted
        self.axis: int | None = None
        self.calibrated = False
        self.observing = False
        self.exact = False
        self.version = 0  # bumped on every fit, so cached quantized weights know when to refresh
        self._observed: list[Tensor] = []
        self._observed_elements = 0
        self.token_split: TokenSplit | None = None

    # -- token split (patch-wise bits) ---------------------------------------------------------------------
    def set_token_split(self, low_bits: int, split: TokenSplit, kind: str | None = None) -> None:
        """Quantize the tokens ``split`` does not keep high at ``low_bits`` (same kind unless given); refit needed."""
        self.low = Quantizer(low_bits, kind or self.requested_kind)
        self.token_split = split
        self.calibrated = False
        self.version += 1

    def clear_token_split(self) -> None:
        """Back to one quantizer for every token."""
        if "low" in self._modules:
            del self._modules["low"]
        self.token_split = None

    # -- state -------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "requested_kind": self.requested_kind,
            "signed": self.signed,
            "axis": self.axis,
            "calibrated": self.calibrated,
            "token_split": None if self.token_split is None else vars(self.token_split).copy(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kind, self.requested_kind, self.signed = state["kind"], state["requested_kind"], state["signed"]
        self.axis, self.calibrated = state["axis"], state["calibrated"]
        split = state.get("token_split")
        self.token_split = None if split is None else TokenSplit(**split)
        self.version += 1

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("scale", "zero_point", "shift"):  # per-channel buffers change shape when fitted
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        split = "" if self.token_split is None else f", token_split={self.token_split}"
        return f"bits={int(self.bits)}, kind={self.kind}, calibrated={self.calibrated}{split}"

    def qparams(self) -> P.QParams:
        """The fitted quantizer as ``primitives.QParams`` (float32)."""
        return P.QParams(
            self.kind,
            int(self.bits),
            self.scale,
            self.zero_point.to(self.scale.dtype),
            self.shift,
            signed=self.signed,
            axis=self.axis,
        )

    def set_params(self, p: P.QParams) -> None:
        """Store a fitted quantizer (the buffers take its shapes)."""
        self.bits = torch.tensor(p.bits, dtype=torch.int64)
        self.scale = p.scale.detach().to(torch.float32).clone()
        self.zero_point = p.zero_point.detach().to(torch.int64).clone()
        self.shift = p.shift.detach().to(torch.int64).clone()
        self.kind, self.signed, self.axis = p.kind, p.signed, p.axis
        self.calibrated = True
        self.version += 1

    def set_bits(self, bits: int, kind: str | None = None) -> None:
        """Change bits (and kind); the quantizer must be fitted again."""
        self.bits = torch.tensor(P.check_bits(bits), dtype=torch.int64)
        if kind is not None:
            self.requested_kind = kind
            self.kind = "uniform" if kind == "auto" else kind
        self.calibrated = False
        self.version += 1

    # -- calibration ---------------------------------------------------------------------------------------
    def observe(self, x: Tensor) -> None:
        """Keep (a strided subsample of) ``x``'s rows for fitting."""
        rows = x.detach().reshape(-1, x.shape[-1]) if x.dim() > 1 else x.detach().reshape(-1, 1)
        room = _MAX_OBSERVED - self._observed_elements
        if room <= 0:
            return
        if rows.numel() > room:
            rows = rows[:: -(-rows.numel() // room)]
        self._observed.append(rows.float().clone())
        self._observed_elements += rows.numel()

    def observed(self) -> Tensor:
        """Everything observed so far as one (rows, channels) tensor."""
        if not self._observed:
            return torch.empty(0)
        return torch.cat(self._observed)

    def clear_observed(self) -> None:
        self._observed, self._observed_elements = [], 0

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.observing:
            self.observe(x)
            if self.token_split is not None:
                self.low.observe(x)
            return x
        if not self.calibrated:
            return x
        params = self.qparams()
        high = P.fake_quantize(x, params)
        if self.token_split is None:
            return high
        if x.dim() < 3:
            from quant.errors import InputError

            raise InputError(
                f"token split: input of shape {tuple(x.shape)} has no token axis (batch, tokens, channels)"
            )
        with torch.no_grad():
            mask = self.token_split.mask(P.decode_int(P.encode(x.detach(), params), params), class_attention())
        return torch.where(mask.unsqueeze(-1), high, self.low(x))


class _WeightQuantMixin:
    """Per-output-channel symmetric uniform weight quantization, with the fake-quant weight cached."""

    weight: nn.Parameter
    weight_quant: Quantizer

    @classmethod
    def adopt(cls, module: nn.Module, wbits: int, abits: int, act_kind: str, weight_method: str) -> nn.Module:
        """Turn ``module`` (the float layer this class extends) into this class in place, keeping its weights."""
        module.__class__ = cls
        module.exact = False
        module.input_quant = Quantizer(abits, act_kind)
        module._init_weight_quant(wbits, weight_method)
        return module

    def set_bits(self, wbits: int, abits: int, act_kind: str, weight_method: str) -> None:
        """Change the bits of an already quantized layer and refit its weight quantizer."""
        self.input_quant.set_bits(abits, act_kind)
        self.weight_quant.set_bits(wbits)
        self.weight_method = weight_method
        self.fit_weight()

    def _init_weight_quant(self, wbits: int, method: str) -> None:
        self.weight_quant = Quantizer(wbits, "uniform", symmetric=True)
        self.weight_method = method
        self._cache: tuple[tuple[int, int, int], Tensor] | None = None
        self.fit_weight()

    def fit_weight(self) -> None:
        """Fit the weight quantizer to the current weights (after changing bits or weights)."""
        bits = int(self.weight_quant.bits)
        self.weight_quant.set_params(
            P.fit(self.weight, bits, "uniform", method=self.weight_method, symmetric=True, axis=0)
        )

    def quantized_weight(self) -> Tensor:
        """The fake-quantized weight (straight-through gradients when the weight requires grad)."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return P.fake_quantize(self.weight, self.weight_quant.qparams())
        key = (self.weight._version, self.weight.data_ptr(), self.weight_quant.version)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, P.fake_quantize(self.weight, self.weight_quant.qparams()))
        return self._cache[1]


class QuantLinear(_WeightQuantMixin, nn.Linear):
    """``nn.Linear`` with per-output-channel symmetric weights (``weight_quant``) and a quantized input
    (``input_quant``). Bias stays float; the integer path folds it into the int32 accumulator."""

    exact: bool = False

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.input_quant(x), self.quantized_weight(), self.bias)


class QuantConv2d(_WeightQuantMixin, nn.Conv2d):
    """``nn.Conv2d`` (the patch embedding) with per-output-channel symmetric weights and a quantized input."""

    exact: bool = False

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.input_quant(x), self.quantized_weight(), self.bias)


class QuantMatMul(nn.Module):
    """Activation × activation GEMM of attention, both operands quantized.

    ``transpose_b=True`` (``matmul_qk``): ``forward(q, k) = â · b̂ᵀ``, so ``b_quant`` sees k with the head
    dimension last. ``transpose_b=False`` (``matmul_av``): ``forward(attn, v) = â · b̂``.
    Plan bits: ``abits`` → ``a_quant`` (q or the probabilities), ``wbits`` → ``b_quant`` (k or v).
    """

    exact: bool = False

    def __init__(self, abits: int, bbits: int, a_kind: str, b_kind: str, *, transpose_b: bool) -> None:
        super().__init__()
        self.a_quant = Quantizer(abits, a_kind)
        self.b_quant = Quantizer(bbits, b_kind)
        self.transpose_b = transpose_b
        self.exact = False

    def extra_repr(self) -> str:
        return f"transpose_b={self.transpose_b}"

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.b_quant(b)
        return self.a_quant(a) @ (b.transpose(-2, -1) if self.transpose_b else b)


class QuantSoftmax(nn.Module):
    """Softmax over ``dim`` (float here; its output is quantized by ``matmul_av.a_quant``)."""

    exact: bool = False

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim
        self.exact = False

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(dim=self.dim)


class QuantGELU(nn.GELU):
    """GELU (float here; its output is quantized by the next ``fc2.input_quant``)."""

    exact: bool = False

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)


class QuantLayerNorm(nn.LayerNorm):
    """LayerNorm (float here; its output is quantized by the consumer's ``input_quant``)."""

    exact: bool = False

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class QuantAdd(nn.Module):
    """Residual add ``a + b`` with its output (the residual stream) quantized by ``output_quant``."""

    exact: bool = False

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.output_quant = Quantizer(bits, "uniform")
        self.exact = False

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.output_quant(a + b)


class QuantScale(nn.Module):
    """Multiplies by a constant (attention's 1/√d on q, Swin's). Float here; in exact mode (and the integer
    model) a power-of-two constant 2^−e only moves the binary point, any other is a dyadic requantization of
    the fixed-point input, so the reference and the integer model round the same way."""

    exact: bool = False

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)
        self.exact = False

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class QuantMean(nn.Module):
    """Mean over ``dim`` (global average pooling, Swin's head); float here. Exact mode (and the integer model)
    round the fixed-point mean half up: ⌊(2·Σx + n)/(2n)⌋ with n the values averaged."""

    exact: bool = False

    def __init__(self, dim: tuple[int, ...], keepdim: bool = False) -> None:
        super().__init__()
        self.dim = tuple(dim)
        self.keepdim = keepdim
        self.exact = False

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(self.dim, keepdim=self.keepdim)


class QuantRearrange(nn.Module):
    """Moves values without changing them (``forward(x, fn) = fn(x)``: pad, reshape, permute; Swin's patch
    merging). Exact mode keeps the residual-stream quantizer of ``x`` attached to the result, so its consumer
    (a LayerNorm) reads the stream's codes as the integer model does."""

    exact: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.exact = False

    def forward(self, x: Tensor, fn: Any) -> Tensor:
        return fn(x)
