"""Patch-wise (token-wise) activation bits: which rows of a GEMM's M run at which bits on the array.

A token-split GEMM (PMQ-style; ``quant.tokens`` quantizes it) has its M rows (tokens) in two groups: the top
``fraction`` at ``abits`` (high), the rest at ``abits_low``. How many rows are high is one rule, ``high_rows``:
⌈fraction·M⌉, the rule ``quant.tokens.high_token_count`` applies to the tokens (the allocator's tests tie the two).

How the array runs them (``costed_rows``), by the target's ``[accelerator.patchwise]`` table:

- ``token_sort = true``: the design gathers each group's tokens together (a reorder of the M token indices,
  ``reorder_cycles_per_token`` cycles per token and GEMM call), so the GEMM runs as two back-to-back GEMMs of
  ``high`` rows at the high bits and M − high rows at the low bits; each group's tiles are packed at its own bits
  in DRAM, and the reorder cycles are added to the GEMM's compute cycles.
- ``token_sort = false``: tokens stay in their image order, which depends on the image, so the schedule must hold
  for any placement of the high tokens. A row tile costs the widest bits among its rows; at worst every high token
  lands in a different tile, so min(tiles, high) whole tiles run at the high bits (their rows are moved at the
  tile's bits: a tile is one packed block) and the rest at the low bits. The row tile is the dataflow's tile of
  M: OS R rows; WS the whole M (every fold streams all of M, so one high token makes the GEMM high); IS C·p rows
  (p the PE's lanes at the high bits).

Outputs are written back at each group's bits (the simulator writes every GEMM's outputs at its activation bits).
Either way the two groups' folds are costed by the ordinary GEMM model (sim/kernels.py) as two GEMMs run one after
the other, so the array's one-off fill (fold pipelining) and memory pipeline restart once between them; the weights
(B) the first group loaded stay on chip for the second when they fit their buffer whole (``b_resident``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.errors import InputError

__all__ = ["Patchwise", "TokenSplit", "check_fraction", "costed_rows", "high_rows"]


@dataclass(frozen=True)
class Patchwise:
    """A target's support for patch-wise bits: whether the design sorts tokens by group, and what that costs."""

    token_sort: bool
    reorder_cycles_per_token: int = 0


def check_fraction(fraction: float, where: str = "token fraction") -> float:
    """``fraction`` as a float if it lies strictly between 0 and 1, else ``InputError`` naming ``where``."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < float(fraction) < 1.0:
        raise InputError(f"{where}: {fraction!r} is outside (0, 1)")
    return float(fraction)


@dataclass(frozen=True)
class TokenSplit:
    """The low group of a token-split GEMM: ``abits_low`` bits for all but the top ``fraction`` of its rows."""

    abits_low: int
    fraction: float

    def __post_init__(self) -> None:
        check_fraction(self.fraction)
        if isinstance(self.abits_low, bool) or not isinstance(self.abits_low, int) or self.abits_low <= 0:
            raise InputError(f"token split: abits_low={self.abits_low!r}; must be a positive integer")


def high_rows(m: int, fraction: float) -> int:
    """Rows of M at the high bits: ⌈fraction·M⌉ (quant.tokens.high_token_count's rule)."""
    return min(m, math.ceil(fraction * m - 1e-9))


def costed_rows(
    dataflow: str, rows: int, cols: int, lanes_high: int, m: int, high: int, token_sort: bool
) -> tuple[int, int]:
    """(rows run at the high bits, rows run at the low bits) of a GEMM with ``high`` of its ``m`` rows high."""
    if not 0 <= high <= m:
        raise InputError(f"token split: {high} high rows of {m}")
    if token_sort or high == 0:
        return high, m - high
    tile = {"os": rows, "ws": m, "is": cols * lanes_high}[dataflow]
    tiles = -(-m // tile)
    at_high = min(m, min(tiles, high) * tile)
    return at_high, m - at_high
