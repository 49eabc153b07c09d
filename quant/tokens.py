"""Patch-wise (token-wise) mixed precision: which tokens of a GEMM input get the high bits.

A token-split quantization point (PMQ-style, Xiao et al., arXiv 2305.06559) keeps the top ``fraction`` of a
tensor's tokens (rows along axis −2; channels on axis −1) at the quantizer's own (high) bits and the rest at the
bits of its ``low`` quantizer. ``high_token_count`` is the one rule for how many tokens that is; ``sim`` costs the
same rule (``sim.patchwise.high_rows``; the allocator's tests tie the two).

Token scores (``TOKEN_SCORES``), all integers so the fake-quant model's exact mode and the integer-only model pick
the very same tokens:

``norm`` (the default; a cheaper proxy than PMQ's class-token attention, which needs the previous block's
    attention on the GEMM's input path)
    Σ_c |n_c|, the L1 norm of the token's integers on the high quantizer's grid (``decode_int`` of its high-bit
    codes): the token's activation magnitude, known as soon as the input is encoded.
``cls_attn`` (PMQ-style)
    the attention the class token pays each token in the latest attention block before the GEMM, summed over
    heads (the CLS row of the softmax output): block i's for its proj, fc1 and fc2, block i−1's for its qkv. The
    model publishes it as it runs (``publish_class_attention``; the integer model passes its fixed-point
    probabilities, the exact mode its float64 copies of them, so both rank tokens alike). Where no attention came
    before (block 0's qkv) the ``norm`` score stands in.
``random`` (the control)
    a fixed random permutation of token positions, seeded per quantization point (``token_seed``): the same
    tokens for every image, chosen without looking at the data.

Ties are broken by position (the earlier token wins), so the selection is a function of the integer scores.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

from quant.errors import InputError

__all__ = [
    "TOKEN_SCORES",
    "TokenSplit",
    "check_fraction",
    "class_attention",
    "high_token_count",
    "high_token_mask",
    "publish_class_attention",
]

TOKEN_SCORES: tuple[str, ...] = ("norm", "cls_attn", "random")

_class_attention: ContextVar[Tensor | None] = ContextVar("mixbit_class_attention", default=None)


def publish_class_attention(attention: Tensor | None) -> None:
    """Set the class-token attention (batch, tokens) the next token-split points score by (None: forget it)."""
    _class_attention.set(attention)


def class_attention() -> Tensor | None:
    """The latest published class-token attention (batch, tokens), or None."""
    return _class_attention.get()


def check_fraction(fraction: float, where: str = "token_fraction") -> float:
    """``fraction`` as a float if it lies strictly between 0 and 1, else ``InputError`` naming ``where``."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < float(fraction) < 1.0:
        raise InputError(f"{where}: token fraction {fraction!r} is outside (0, 1)")
    return float(fraction)


def high_token_count(tokens: int, fraction: float) -> int:
    """Tokens kept at the high bits among ``tokens``: ⌈fraction·tokens⌉ (at least one when there are tokens)."""
    return min(tokens, math.ceil(fraction * tokens - 1e-9))


@dataclass(frozen=True)
class TokenSplit:
    """The split of one quantization point: ``fraction`` of tokens high, scored by ``score``, ``seed`` for random."""

    fraction: float
    score: str = "norm"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction(self.fraction)
        if self.score not in TOKEN_SCORES:
            raise InputError(f"token score {self.score!r}; choose from {', '.join(TOKEN_SCORES)}")

    def scores(self, high_integers: Tensor, attention: Tensor | None = None) -> Tensor:
        """Score of every token (shape without the channel axis) from the high-grid integers (``norm``), the
        class-token ``attention`` (``cls_attn``, when given and shaped like the tokens) or the seed."""
        tokens = high_integers.shape[-2]
        if self.score == "cls_attn" and attention is not None and attention.shape == high_integers.shape[:-1]:
            return attention
        if self.score == "random":
            generator = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(tokens, generator=generator).to(high_integers.device)
            return order.expand(high_integers.shape[:-1])
        return high_integers.to(torch.int64).abs().sum(dim=-1)

    def mask(self, high_integers: Tensor, attention: Tensor | None = None) -> Tensor:
        """Bool mask (shape without the channel axis): True for the tokens kept at the high bits."""
        return high_token_mask(self.scores(high_integers, attention), self.fraction)


def high_token_mask(scores: Tensor, fraction: float) -> Tensor:
    """True for the ``high_token_count`` highest-scoring tokens along the last axis of ``scores``."""
    if scores.dim() < 1:
        raise InputError("token split: the input has no token axis (expected (..., tokens, channels))")
    count = high_token_count(scores.shape[-1], fraction)
    top = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :count]  # stable: earlier wins ties
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(-1, top, True)
