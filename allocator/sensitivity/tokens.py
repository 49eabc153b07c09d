"""Token importance shares for patch-wise options (``allocator.ilp.patchwise``): how much of a GEMM input's
importance its high token group carries.

For each Linear GEMM named, the share s is the L1 mass of the tokens its split keeps high over the L1 mass of all
its tokens, averaged over the images: Σ_{t high} Σ_c |x_tc| / Σ_t Σ_c |x_tc| on the float model's input to the
layer. ``norm`` (quant.tokens' default score) keeps the top ⌈f·N⌉ tokens by that same L1 norm, so s ≥ f; the
``random`` control keeps the GEMM's seeded random tokens (``quant.quantize.token_seed``), so s is about f.
``cls_attn`` measures importance as the class token's attention (summed over heads) and keeps its top tokens:
s = Σ_{t high} a_t / Σ_t a_t, taken on an 8-bit-weight copy whose attention publishes it (activations not
quantized); where no attention precedes the layer (block 0's qkv) the ``norm`` share stands in, as the split does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from quant.errors import InputError
from quant.quantize import QuantConfig, quantize_, token_seed
from quant.tokens import TOKEN_SCORES, TokenSplit, check_fraction, class_attention, high_token_mask

__all__ = ["token_shares"]


def token_shares(
    net: nn.Module, images: Tensor, fraction: float, layers: Iterable[str], *, score: str = "norm"
) -> dict[str, float]:
    """Token importance share (0..1) of the high group of each of ``layers`` (Linear GEMMs with token inputs)
    on ``images``, with ``fraction`` of tokens high by ``score`` (``norm``, ``cls_attn`` or ``random``)."""
    fraction = check_fraction(fraction, "--patchwise")
    if score not in TOKEN_SCORES:
        raise InputError(f"token score {score!r}; choose from {', '.join(TOKEN_SCORES)}")
    if score == "cls_attn":
        net = quantize_(copy.deepcopy(net), QuantConfig(wbits=8, abits=8))  # uncalibrated: activations pass through
    modules = dict(net.named_modules())
    sums: dict[str, list[float]] = {}
    hooks = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0].detach().double()
            if x.dim() < 3:
                raise InputError(f"token split: layer {name!r} has no token axis (input shape {tuple(x.shape)})")
            norms = x.abs().sum(dim=-1)  # (batch, tokens)
            attention = class_attention() if score == "cls_attn" else None
            if attention is not None and attention.shape == norms.shape:
                norms = attention.detach().double()
                mask = high_token_mask(norms, fraction)
            elif score in ("norm", "cls_attn"):
                mask = high_token_mask(norms, fraction)  # the float L1 norm orders tokens as the integer one does
            else:
                mask = TokenSplit(fraction, "random", token_seed(name)).mask(torch.zeros_like(x, dtype=torch.int64))
            shares = (norms * mask).sum(dim=-1) / norms.sum(dim=-1).clamp_min(1e-300)
            sums.setdefault(name, []).extend(shares.tolist())

        return hook

    for name in layers:
        module = modules.get(name)
        if not isinstance(module, nn.Linear):
            raise InputError(f"token split: {name!r} is not a Linear layer of the model")
        hooks.append(module.register_forward_pre_hook(hook_for(name)))
    try:
        with torch.no_grad():
            net.eval()(images)
    finally:
        for handle in hooks:
            handle.remove()
    return {name: sum(values) / len(values) for name, values in sums.items()}
