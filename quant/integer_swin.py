"""Integer-only inference of a quantized timm Swin Transformer (its check against exact mode is ``quant.verify``).

The number formats and kernels are those of the ViT integer model (``quant.integer``): quantizer codes at every
quantization point, fixed point with ``ACT_FRAC_BITS`` fraction bits between them, the same I-LayerNorm,
Shiftmax and ShiftGELU, dyadic requantization. What Swin adds, step by step as :meth:`IntegerSwin.run` does it:

- the patch embedding's LayerNorm (``patch_embed.norm``) on fixed point; a stage's first block then gets a
  fixed-point stream (there is no position-embedding add to quantize it), later blocks the codes of the previous
  block's ``add2``;
- windowed attention: the LayerNorm output is cyclically shifted (shifted-window blocks), zero-padded to whole
  windows, cut into windows of N tokens; q·kᵀ is requantized to fixed point, then the relative position bias
  (rounded to the fixed-point grid at conversion) and, in shifted blocks, timm's −100 mask are added as integers
  before Shiftmax; the windows are put back, cropped and shifted back;
- q·(1/√d): a power-of-two scale moves the binary point (no rounding), any other is a dyadic requantization;
- patch merging: the stream's codes of each 2×2 neighbourhood are concatenated (zero-padded to even sizes with the
  quantizer's zero point), I-LayerNorm on 4C channels, the ``reduction`` GEMM (no bias);
- the head: final LayerNorm, global average pooling rounded half up (``quant.integer.fixed_mean``), ``head.fc``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quant import primitives as P
from quant.errors import InputError
from quant.integer import (
    ACT_FRAC_BITS,
    FixedScale,
    IntAdd,
    IntegerRun,
    IntGemm,
    IntLayerNorm,
    IntMatMul,
    Keeper,
    StreamToFixed,
    Widths,
    _IntegerNet,
    decoded_bound,
    fixed_mean,
    gelu_fixed,
    softmax_fixed,
    to_fixed,
)
from quant.modules import QuantAdd, QuantConv2d, QuantGELU, QuantLayerNorm, QuantLinear, QuantMean
from quant.primitives import QParams

__all__ = ["IntPatchMerging", "IntSwinBlock", "IntegerSwin", "is_swin", "swin_unsupported"]

_FIXED_STEP = 2.0**-ACT_FRAC_BITS  # a fixed-point LayerNorm input: integers of step 2^-16, range unknown


def is_swin(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``SwinTransformer`` (float or quantized)."""
    return type(model).__name__ == "SwinTransformer" and hasattr(model, "layers") and hasattr(model, "patch_embed")


def swin_unsupported(model: nn.Module) -> str | None:
    """Why :class:`IntegerSwin` cannot take float Swin ``model`` (before quantizing), or None."""
    name = type(model).__name__
    if getattr(model, "absolute_pos_embed", None) is not None:
        return f"{name}: an absolute position embedding is not supported by the integer-only Swin"
    pool = getattr(getattr(model.head, "global_pool", None), "pool_type", "avg")
    if pool != "avg":
        return f"{name}: head pooling {pool!r} is not supported (only 'avg')"
    for stage_index, stage in enumerate(model.layers):
        for block_index, block in enumerate(stage.blocks):
            if getattr(block, "dynamic_mask", False):
                return (
                    f"{name}: layers.{stage_index}.blocks.{block_index} builds its shift mask per input (dynamic_mask)"
                )
    return None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


@dataclass(frozen=True)
class IntSwinBlock:
    """One Swin block's integer kernels: (shifted-)window attention and the MLP, two residual adds.

    ``stream_in`` is None when the block's input is fixed point (a stage's first block), else the converter of
    the previous block's ``add2`` codes. ``rel_pos_bias`` (1, heads, N, N) and ``mask`` (windows, N, N) are
    fixed point; ``a_frac_bits``: fraction bits q·scale has for ``matmul_qk`` (16 + e for a 2^−e scale).
    """

    name: str
    stream_in: StreamToFixed | None
    norm1: IntLayerNorm
    qkv: IntGemm
    q_scale: FixedScale
    matmul_qk: IntMatMul
    rel_pos_bias: Tensor
    mask: Tensor | None
    matmul_av: IntMatMul
    proj: IntGemm
    add1: IntAdd
    stream_mid: StreamToFixed
    norm2: IntLayerNorm
    fc1: IntGemm
    fc2: IntGemm
    add2: IntAdd
    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]


@dataclass(frozen=True)
class IntPatchMerging:
    """Swin's downsampling: 2×2 codes of the stream concatenated, I-LayerNorm on 4C channels, ``reduction``."""

    name: str
    params: QParams
    norm: IntLayerNorm
    reduction: IntGemm


def _layernorm(name: str, module: nn.Module, stream: QParams | None) -> IntLayerNorm:
    """I-LayerNorm of the stream's codes (their step and range), or of fixed point when ``stream`` is None."""
    _require(isinstance(module, QuantLayerNorm), f"integer model: {name} is not a quantized LayerNorm")
    if stream is None:
        return IntLayerNorm.build(name, module, _FIXED_STEP)  # type: ignore[arg-type]
    return IntLayerNorm.build(name, module, float(P.grid_step(stream)), decoded_bound(stream))  # type: ignore[arg-type]


class IntegerSwin(_IntegerNet):
    """A quantized timm ``SwinTransformer`` (``quant.quantize_`` + ``quant.calibrate_``) run with integers only.

    Built by ``quant.integer.to_integer``; the same interface as ``quant.integer.IntegerModel`` (``run``,
    ``forward``, ``predict``, ``gemms``, ``accumulators``), so ``quant.verify`` compares it with the fake-quant
    model's exact mode point by point. See the module docstring for the steps.
    """

    def __init__(self, model: nn.Module, widths: Widths | None = None) -> None:
        self.widths = widths or Widths()
        _require(is_swin(model), f"integer model: {type(model).__name__} is not a timm SwinTransformer")
        reason = swin_unsupported(model)
        _require(reason is None, f"integer model: {reason}")
        embed = model.patch_embed
        _require(isinstance(embed.proj, QuantConv2d), "integer model: patch_embed.proj is not quantized (quantize_)")
        _require(embed.proj.input_quant.calibrated, "integer model: model is not calibrated")
        _require(isinstance(model.head.fc, QuantLinear), "integer model: head.fc must be a quantized Linear")
        _require(
            isinstance(model.head.global_pool.pool, QuantMean),
            "integer model: the head's average pooling is not the quantized QuantMean (run quant.quantize_)",
        )
        self.image_params: QParams = embed.proj.input_quant.qparams()
        self.patch_embed = IntGemm.build("patch_embed.proj", embed.proj)
        self.embed_norm = (
            None if isinstance(embed.norm, nn.Identity) else _layernorm("patch_embed.norm", embed.norm, None)
        )
        stream: QParams | None = None
        stages: list[tuple[IntPatchMerging | None, tuple[IntSwinBlock, ...]]] = []
        for stage_index, stage in enumerate(model.layers):
            prefix = f"layers.{stage_index}"
            merging = None
            if not isinstance(stage.downsample, nn.Identity):
                _require(stream is not None, f"integer model: {prefix}.downsample has no quantized stream to merge")
                merging = self._merging(f"{prefix}.downsample", stage.downsample, stream)  # type: ignore[arg-type]
                stream = None  # the reduction's output is fixed point
            blocks = []
            for block_index, block in enumerate(stage.blocks):
                blocks.append(self._block(f"{prefix}.blocks.{block_index}", block, stream))
                stream = blocks[-1].add2.params
            stages.append((merging, tuple(blocks)))
        self.stages = tuple(stages)
        _require(stream is not None, "integer model: a Swin without blocks")
        self.stream_out: QParams = stream  # type: ignore[assignment]
        self.norm = _layernorm("norm", model.norm, self.stream_out)
        pool = model.head.global_pool.pool
        _require(tuple(pool.dim) == (1, 2) and not pool.keepdim, "integer model: head pooling must average H and W")
        self.head = IntGemm.build("head.fc", model.head.fc)

    @staticmethod
    def _merging(name: str, module: nn.Module, stream: QParams) -> IntPatchMerging:
        _require(isinstance(module.reduction, QuantLinear), f"integer model: {name}.reduction is not quantized")
        return IntPatchMerging(
            name,
            stream,
            _layernorm(f"{name}.norm", module.norm, stream),
            IntGemm.build(f"{name}.reduction", module.reduction),
        )

    @staticmethod
    def _block(name: str, block: nn.Module, stream: QParams | None) -> IntSwinBlock:
        attn, mlp = block.attn, block.mlp
        for part in ("drop_path1", "drop_path2"):  # stochastic depth is the identity at inference
            _require(
                type(getattr(block, part)).__name__ in ("Identity", "DropPath"),
                f"integer model: {name}.{part} must be Identity or DropPath",
            )
        _require(isinstance(getattr(block, "add1", None), QuantAdd), f"integer model: {name} is not quantized")
        _require(isinstance(mlp.act, QuantGELU), f"integer model: {name}.mlp.act must be GELU")
        _require(isinstance(mlp.norm, nn.Identity), f"integer model: {name}.mlp.norm must be Identity")
        _require(hasattr(attn, "q_scale"), f"integer model: {name}.attn has no q_scale (run quant.quantize_)")
        q_scale = FixedScale.build(attn.q_scale.scale)
        a_frac = ACT_FRAC_BITS + (q_scale.exponent or 0)
        head_dim = attn.qkv.out_features // 3 // attn.num_heads
        window_area = int(attn.window_area)
        add1 = IntAdd.build(f"{name}.add1", block.add1)
        mask = block.attn_mask
        return IntSwinBlock(
            name=name,
            stream_in=None if stream is None else StreamToFixed.build(stream),
            norm1=_layernorm(f"{name}.norm1", block.norm1, stream),
            qkv=IntGemm.build(f"{name}.attn.qkv", attn.qkv),
            q_scale=q_scale,
            matmul_qk=IntMatMul.build(f"{name}.attn.matmul_qk", attn.matmul_qk, head_dim, a_frac),
            rel_pos_bias=to_fixed(attn.rel_pos_bias_fixed()),
            mask=None if mask is None else to_fixed(mask),
            matmul_av=IntMatMul.build(f"{name}.attn.matmul_av", attn.matmul_av, window_area),
            proj=IntGemm.build(f"{name}.attn.proj", attn.proj),
            add1=add1,
            stream_mid=StreamToFixed.build(add1.params),
            norm2=_layernorm(f"{name}.norm2", block.norm2, add1.params),
            fc1=IntGemm.build(f"{name}.mlp.fc1", mlp.fc1),
            fc2=IntGemm.build(f"{name}.mlp.fc2", mlp.fc2),
            add2=IntAdd.build(f"{name}.add2", block.add2),
            num_heads=attn.num_heads,
            window_size=tuple(block.window_size),  # type: ignore[arg-type]
            shift_size=tuple(block.shift_size),  # type: ignore[arg-type]
        )

    # -- running -----------------------------------------------------------------------------------------
    def run(self, images: Tensor, *, trace: bool = False) -> IntegerRun:
        """Integer forward of float images (N, C, H, W), keeping every quantization point's codes."""
        widths = self.widths
        keep = Keeper(widths, trace)

        tokens = self._embed_patches(images, keep)
        kh, kw = self.patch_embed.kernel  # type: ignore[misc]
        batch, _, height, width = images.shape  # image codes have the images' shape
        x = tokens.reshape(batch, height // kh, width // kw, -1)
        if self.embed_norm is not None:
            x = keep("patch_embed.norm.out", self.embed_norm(x, widths.observer("patch_embed.norm")))
        stream, stream_params = x, None  # fixed point until the first residual add
        for merging, blocks in self.stages:
            if merging is not None:
                stream, stream_params = self._merge(merging, stream, keep), None
            for block in blocks:
                stream = self._run_block(block, stream, keep)
                stream_params = block.add2.params
        assert stream_params is not None
        normed = keep("norm.out", self.norm(P.decode_int(stream, stream_params), widths.observer("norm")))
        pooled = keep("pool", fixed_mean(normed, (1, 2)))
        logits = self._gemm(self.head, pooled, keep)
        keep("logits", logits, point=True)
        return keep.result(logits)

    def _merge(self, merging: IntPatchMerging, codes: Tensor, keep: Callable[..., Tensor]) -> Tensor:
        n = merging.name
        batch, height, width, channels = codes.shape
        zero = int(torch.round(merging.params.zero_point.reshape(-1)[0]))
        codes = F.pad(codes, (0, 0, 0, width % 2, 0, height % 2), value=zero)
        _, height, width, _ = codes.shape
        merged = codes.reshape(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5).flatten(3)
        normed = keep(
            f"{n}.norm.out", merging.norm(P.decode_int(merged, merging.params), self.widths.observer(f"{n}.norm"))
        )
        return self._gemm(merging.reduction, normed, keep)

    def _attention(self, block: IntSwinBlock, x: Tensor, keep: Callable[..., Tensor]) -> Tensor:
        """(Shifted-)window attention of fixed-point x (B, H, W, C), back in (B, H, W, C)."""
        n, observer = block.name, self.widths.observer
        batch, height, width, channels = x.shape
        (wh, ww), (sh, sw) = block.window_size, block.shift_size
        shifted = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2)) if sh or sw else x
        pad_h, pad_w = (wh - height % wh) % wh, (ww - width % ww) % ww
        shifted = F.pad(shifted, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = height + pad_h, width + pad_w
        windows = shifted.reshape(batch, padded_h // wh, wh, padded_w // ww, ww, channels)
        windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, channels)
        qkv = self._gemm(block.qkv, windows, keep)
        count, tokens, _ = qkv.shape
        heads = block.num_heads
        q, k, v = qkv.reshape(count, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if block.q_scale.dyadic is not None:
            q = keep(f"{n}.attn.q_scaled", block.q_scale(q))
        logits = self._matmul(block.matmul_qk, q, k, keep) + block.rel_pos_bias
        if block.mask is not None:
            num_windows = block.mask.shape[0]
            logits = logits.view(-1, num_windows, heads, tokens, tokens) + block.mask.unsqueeze(1).unsqueeze(0)
            logits = logits.view(-1, heads, tokens, tokens)
        logits = keep(f"{n}.attn.logits", logits)
        probs = keep(f"{n}.attn.softmax", softmax_fixed(logits, observer(f"{n}.attn.softmax")))
        mixed = self._matmul(block.matmul_av, probs, v, keep)
        mixed = keep(f"{n}.attn.heads", mixed.transpose(1, 2).reshape(count, tokens, channels))
        out = self._gemm(block.proj, mixed, keep)
        out = out.reshape(batch, padded_h // wh, padded_w // ww, wh, ww, channels).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(batch, padded_h, padded_w, channels)[:, :height, :width, :]
        return torch.roll(out, shifts=(sh, sw), dims=(1, 2)) if sh or sw else out

    def _run_block(self, block: IntSwinBlock, stream: Tensor, keep: Callable[..., Tensor]) -> Tensor:
        n, observer = block.name, self.widths.observer
        if block.stream_in is None:  # fixed point: LayerNorm and residual read it as it is
            x, residual = stream, stream
        else:
            x, residual = P.decode_int(stream, block.stream_in.params), block.stream_in(stream)
        normed = keep(f"{n}.norm1.out", block.norm1(x, observer(f"{n}.norm1")))
        out = self._attention(block, normed, keep)
        residual = keep(f"{n}.add1.a", residual)
        keep(f"{n}.add1.sum", residual + out)
        stream = keep(f"{n}.add1.output_quant", block.add1(residual, out), point=True)
        normed = keep(
            f"{n}.norm2.out", block.norm2(P.decode_int(stream, block.stream_mid.params), observer(f"{n}.norm2"))
        )
        hidden = self._gemm(block.fc1, normed, keep)
        hidden = keep(f"{n}.mlp.act", gelu_fixed(hidden, observer(f"{n}.mlp.act")))
        out = self._gemm(block.fc2, hidden, keep)
        residual = keep(f"{n}.add2.a", block.stream_mid(stream))
        keep(f"{n}.add2.sum", residual + out)
        return keep(f"{n}.add2.output_quant", block.add2(residual, out), point=True)

    def gemms(self) -> dict[str, IntGemm | IntMatMul]:
        """Every integer GEMM by contract name."""
        found: dict[str, IntGemm | IntMatMul] = {"patch_embed.proj": self.patch_embed}
        for merging, blocks in self.stages:
            if merging is not None:
                found[merging.reduction.name] = merging.reduction
            for block in blocks:
                for gemm in (block.qkv, block.matmul_qk, block.matmul_av, block.proj, block.fc1, block.fc2):
                    found[gemm.name] = gemm
        found["head.fc"] = self.head
        return found
