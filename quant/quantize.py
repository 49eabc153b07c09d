"""``quantize_(model, config)``: turn a timm ViT / DeiT / Swin (or a testbed ViT) into a fake-quant model.

A registry maps module types to handlers (torchao's ``quantize_`` pattern): each handler swaps a module
in place for its quantized equivalent (same parameters and state-dict keys, plus quantizer buffers).
GEMM names follow the contract: the module's qualified name, and ``<attention>.matmul_qk`` /
``<attention>.matmul_av`` for the attention matmuls. Weights are fitted at once; activation quantizers
pass values through until ``calibrate_``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from quant import primitives as P
from quant._torch import import_timm
from quant.errors import InputError
from quant.integer import ACT_FRAC_BITS
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
from quant.plan import BitPlan, LayerBits
from quant.tokens import TokenSplit, publish_class_attention

import_timm()
from timm.layers.adaptive_avgmax_pool import FastAdaptiveAvgPool  # noqa: E402
from timm.layers.attention import Attention, maybe_add_mask, resolve_self_attn_mask  # noqa: E402
from timm.models.swin_transformer import (  # noqa: E402
    PatchMerging,
    SwinTransformer,
    SwinTransformerBlock,
    WindowAttention,
)
from timm.models.vision_transformer import Block, VisionTransformer  # noqa: E402

__all__ = [
    "QuantAttention",
    "QuantBlock",
    "QuantConfig",
    "QuantPatchMerging",
    "QuantSwinBlock",
    "QuantVisionTransformer",
    "QuantWindowAttention",
    "activation_quantizers",
    "gemm_layers",
    "gemm_names",
    "quantize_",
    "register_handler",
]


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model.

    Without ``plan`` every GEMM gets (``wbits``, ``abits``) with ``act_kind`` activations (a
    ``primitives.KINDS`` name, or ``"auto"``: calibration picks per quantizer). With ``plan`` each GEMM
    gets ``plan.bits_for(name)`` and the plan's default replaces ``wbits``/``abits``/kinds.
    ``residual_bits``: the residual stream (each residual add's output, and the position-embedding add).
    ``weight_method``: how weight scales are fitted (``primitives.METHODS``; MSE clipping by default).
    """

    wbits: int = 8
    abits: int = 8
    act_kind: str = "uniform"
    plan: BitPlan | None = None
    residual_bits: int = 8
    weight_method: str = P.WEIGHT_METHOD

    def __post_init__(self) -> None:
        LayerBits(self.wbits, self.abits, act_kind=self.act_kind)  # validates bits and kind
        P.check_bits(self.residual_bits, "residual_bits")
        if self.weight_method not in P.METHODS:
            raise InputError(f"weight_method {self.weight_method!r}; choose from {', '.join(P.METHODS)}")

    def bits_for(self, name: str) -> LayerBits:
        if self.plan is not None:
            return self.plan.bits_for(name)
        return LayerBits(self.wbits, self.abits, act_kind=self.act_kind)


# ------------------------------------------------------------------------------ quantized timm structures


class QuantAttention(Attention):
    """timm ``Attention`` with quantized matmuls (``matmul_qk``, ``matmul_av``) and a ``softmax`` module.

    q is quantized after the 1/√d scaling (the scale folds into q's quantizer scale).
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = self.matmul_qk(q * self.scale, k)
        attn = maybe_add_mask(attn, resolve_self_attn_mask(N, attn, attn_mask, is_causal))
        attn = self.softmax(attn)
        publish_class_attention(attn[:, :, 0, :].detach().sum(dim=1))  # cls_attn token scores (quant.tokens)
        attn = self.attn_drop(attn)
        x = self.matmul_av(attn, v)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


class QuantBlock(Block):
    """timm ViT ``Block`` whose two residual adds are ``QuantAdd`` modules ``add1`` and ``add2``."""

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        x = self.add1(x, self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))))
        return self.add2(x, self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))


class QuantVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` whose token stream entering the blocks is quantized by ``pos_add``."""

    def _pos_embed(self, x: Tensor) -> Tensor:
        publish_class_attention(None)  # a new forward: no attention yet for the first block's qkv
        standard = self.pos_embed is not None and not self.dynamic_img_size and not self.no_embed_class
        if not standard:  # other layouts: timm's own embedding, then the stream quantizer
            return self.pos_add.output_quant(super()._pos_embed(x))
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        return self.pos_drop(self.pos_add(x, self.pos_embed))


class QuantWindowAttention(WindowAttention):
    """timm Swin ``WindowAttention`` with quantized matmuls. q is scaled by the ``q_scale`` module (exact for the
    integer path whatever the head dimension); the relative position bias is quantized to the fixed-point grid
    of the logits (``quant.integer.ACT_FRAC_BITS`` fraction bits, as GEMM biases are) and it and the shift mask
    are added to q·kᵀ before the softmax."""

    def rel_pos_bias_fixed(self) -> Tensor:
        """The relative position bias (1, heads, N, N) rounded to the 2^−16 grid (float64)."""
        bias = self._get_rel_pos_bias().detach().to(torch.float64)
        return torch.floor(bias * 2.0**ACT_FRAC_BITS + 0.5) / 2.0**ACT_FRAC_BITS

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B_, N, _ = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = self.matmul_qk(self.q_scale(q), k)
        attn = attn + self.rel_pos_bias_fixed().to(attn.dtype)
        if mask is not None:
            num_win = mask.shape[0]
            attn = attn.view(-1, num_win, self.num_heads, N, N) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(self.softmax(attn))
        x = self.matmul_av(attn, v).transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))


class QuantSwinBlock(SwinTransformerBlock):
    """timm ``SwinTransformerBlock`` whose residual adds are ``QuantAdd`` modules ``add1`` and ``add2``. The MLP
    runs on (B, H, W, C) as it is (timm flattens to tokens first: the same values), so the residual stream leaves
    ``add2`` untouched and the next block's LayerNorm reads its codes."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.add1(x, self.drop_path1(self._attn(self.norm1(x))))
        return self.add2(x, self.drop_path2(self.mlp(self.norm2(x))))


class QuantPatchMerging(PatchMerging):
    """timm Swin ``PatchMerging``: each 2×2 neighbourhood of the residual stream concatenated (the ``rearrange``
    module, which exact mode sees through), then LayerNorm on 4C channels and the ``reduction`` Linear."""

    def merge(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 4C), zero-padded to even sizes, in timm's channel order."""
        B, H, W, C = x.shape
        x = nn.functional.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        _, H, W, _ = x.shape
        return x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(self.rearrange(x, self.merge)))


# ---------------------------------------------------------------------------------------------- registry

Handler = Callable[[nn.Module, str, QuantConfig], None]
_HANDLERS: dict[type, Handler] = {}
_ATTENTION_TYPES: dict[type, type] = {Attention: QuantAttention, WindowAttention: QuantWindowAttention}


def register_handler(*types: type) -> Callable[[Handler], Handler]:
    """Register ``handler(module, name, config)`` for modules of exactly these types."""

    def wrap(handler: Handler) -> Handler:
        for t in types:
            _HANDLERS[t] = handler
        return handler

    return wrap


def _weight_bits(name: str, bits: LayerBits) -> int:
    if bits.weight_kind != "uniform":
        raise InputError(f"layer {name!r}: weights are quantized uniform only; got weight_kind {bits.weight_kind!r}")
    return bits.wbits


def token_seed(name: str) -> int:
    """The random-token control's seed of GEMM ``name``'s input: fixed by the name, so every run draws the same."""
    return zlib.crc32(name.encode())


@register_handler(nn.Linear, QuantLinear, nn.Conv2d, QuantConv2d)
def _weight_gemm(module: nn.Module, name: str, config: QuantConfig) -> None:
    bits = config.bits_for(name)
    args = (_weight_bits(name, bits), bits.abits, bits.act_kind, config.weight_method)
    if isinstance(module, QuantLinear | QuantConv2d):
        module.set_bits(*args)
    else:
        (QuantLinear if isinstance(module, nn.Linear) else QuantConv2d).adopt(module, *args)
    quantizer = module.input_quant
    quantizer.clear_token_split()
    if bits.token_split:
        split = TokenSplit(bits.token_fraction, bits.token_score, token_seed(name))  # type: ignore[arg-type]
        quantizer.set_token_split(bits.abits_low, split, bits.act_kind)  # type: ignore[arg-type]


@register_handler(Attention, WindowAttention, QuantAttention, QuantWindowAttention)
def _attention(module: nn.Module, name: str, config: QuantConfig) -> None:
    qk, av = config.bits_for(f"{name}.matmul_qk"), config.bits_for(f"{name}.matmul_av")
    if isinstance(module, QuantAttention | QuantWindowAttention):
        module.matmul_qk.a_quant.set_bits(qk.abits, qk.act_kind)
        module.matmul_qk.b_quant.set_bits(qk.wbits, qk.weight_kind)
        module.matmul_av.a_quant.set_bits(av.abits, av.act_kind)
        module.matmul_av.b_quant.set_bits(av.wbits, av.weight_kind)
        return
    module.__class__ = _ATTENTION_TYPES[type(module)]
    module.fused_attn = False
    module.matmul_qk = QuantMatMul(qk.abits, qk.wbits, qk.act_kind, qk.weight_kind, transpose_b=True)
    module.matmul_av = QuantMatMul(av.abits, av.wbits, av.act_kind, av.weight_kind, transpose_b=False)
    module.softmax = QuantSoftmax(dim=-1)
    if isinstance(module, WindowAttention):
        module.q_scale = QuantScale(module.scale)


def _residual_bits(module: nn.Module, config: QuantConfig, *names: str) -> None:
    for attr in names:
        existing = getattr(module, attr, None)
        if isinstance(existing, QuantAdd):
            existing.output_quant.set_bits(config.residual_bits)
        else:
            setattr(module, attr, QuantAdd(config.residual_bits))


@register_handler(Block, QuantBlock)
def _block(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantBlock
    _residual_bits(module, config, "add1", "add2")


@register_handler(SwinTransformerBlock, QuantSwinBlock)
def _swin_block(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantSwinBlock
    _residual_bits(module, config, "add1", "add2")


@register_handler(PatchMerging, QuantPatchMerging)
def _patch_merging(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantPatchMerging
    if not isinstance(getattr(module, "rearrange", None), QuantRearrange):
        module.rearrange = QuantRearrange()


@register_handler(SwinTransformer)
def _swin(module: nn.Module, name: str, config: QuantConfig) -> None:
    pool = getattr(getattr(module.head, "global_pool", None), "pool", None)
    if isinstance(pool, FastAdaptiveAvgPool):  # average pooling whose rounding the integer path pins down
        module.head.global_pool.pool = QuantMean(tuple(pool.dim), keepdim=not pool.flatten)


@register_handler(VisionTransformer, QuantVisionTransformer)
def _vit(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantVisionTransformer
    _residual_bits(module, config, "pos_add")


def _layernorm(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantLayerNorm


def _gelu(module: nn.Module, name: str, config: QuantConfig) -> None:
    module.__class__ = QuantGELU


register_handler(nn.LayerNorm, QuantLayerNorm)(_layernorm)
register_handler(nn.GELU, QuantGELU)(_gelu)
try:  # timm's own LayerNorm subclass (fast-norm option), used by ViT/DeiT blocks
    from timm.layers import LayerNorm as _TimmLayerNorm

    register_handler(_TimmLayerNorm)(_layernorm)
except ImportError:  # pragma: no cover - older timm
    pass


# -------------------------------------------------------------------------------------------------- api


def gemm_names(model: nn.Module) -> list[str]:
    """Contract names of the GEMMs ``quantize_`` quantizes in ``model`` (before or after quantization)."""
    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, QuantMatMul):
            continue  # listed through their attention module
        if isinstance(module, nn.Linear | nn.Conv2d) and type(module) in _HANDLERS:
            names.append(name)
        elif type(module) in _ATTENTION_TYPES or type(module) in _ATTENTION_TYPES.values():
            names += [f"{name}.matmul_qk", f"{name}.matmul_av"]
    return names


def gemm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Quantized GEMM modules by contract name (QuantLinear, QuantConv2d, QuantMatMul)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear | QuantConv2d | QuantMatMul)}


def activation_quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """Every activation quantizer (all ``Quantizer`` modules but the weight quantizers), by module name."""
    return {
        name: m for name, m in model.named_modules() if isinstance(m, Quantizer) and not name.endswith("weight_quant")
    }


def quantize_(model: nn.Module, config: QuantConfig | None = None) -> nn.Module:
    """Quantize ``model`` in place (and return it). Calling it again on a quantized model re-bits it.

    Raises ``InputError`` for a plan naming a layer the model lacks, a layer missing from a plan without
    default, unsupported bits or kinds, or a model with no GEMM to quantize.
    """
    config = config or QuantConfig()
    if not isinstance(config, QuantConfig):
        raise InputError(f"quantize_ takes a QuantConfig, got {type(config).__name__}")
    names = gemm_names(model)
    if not names:
        raise InputError(f"model {type(model).__name__} has no Linear, Conv2d or attention GEMM to quantize")
    if config.plan is not None:
        config.plan.check_layers(names)
    modules = dict(model.named_modules())
    for name in names:  # validate every layer's bits before changing anything
        bits = config.bits_for(name)
        if not name.endswith((".matmul_qk", ".matmul_av")):
            _weight_bits(name, bits)
        if bits.token_split and not isinstance(modules.get(name), nn.Linear):
            raise InputError(
                f"layer {name!r}: a token split (abits_low, token_fraction) applies to the token inputs of Linear "
                "GEMMs only (qkv, proj, fc1, fc2), not to the patch embedding or the attention matmuls"
            )
    for name, module in list(model.named_modules()):
        handler = _HANDLERS.get(type(module))
        if handler is not None:
            handler(module, name, config)
    return model
