"""Multiply-accumulates one processing element (PE) completes per cycle, by PE kind and bit pair.

``macs_per_pe(pe, weight_bits, act_bits)`` is p(w, a):

- ``"int8"``: SCALE-Sim-like 8×8 PE, p = 1 for any bits ≤ 8; bits only change the bytes moved.
- ``"bitfusion"``: Bit Fusion's fused 8×8 PE of 2-bit BitBricks (Sharma et al., ISCA 2018),
  p = ⌊8/max(a,2)⌋·⌊8/max(w,2)⌋ (8×8 → 1, 4×4 → 4, 2×2 → 16). 3-bit operands run as 4-bit, 5/6-bit as 8-bit
  (the floor does this).
- ``"dsp_packed"``: one PE is one Xilinx DSP48E2 (27×18 multiplier). Two INT8 products sharing one operand
  per DSP (Xilinx WP486, "Deep Learning with INT8 Optimization on Xilinx Devices"), so p = 2 whenever
  max(w, a) ∈ 5..8: 5- and 6-bit operands are sign-extended into the same two 8-bit fields, no gain.
  Four INT4 products per DSP with a correction term (DSP-Packing, Sommer et al., arXiv 2203.11028), so
  p = 4 when max(w, a) ≤ 4: 2- and 3-bit operands use the 4-bit fields; the packing has no 8-product mode.
- ``"lut"``: a PE is a fixed LUT budget equal to one 8×8 LUT multiplier; at lower bits that budget holds
  more multipliers. Cost per multiplier from FINN's MVAU estimate (Blott et al., FINN-R, TRETS 2018;
  finn ``MVAU.lut_estimation``): (2⌈(w+a)/6⌉ − 1)·(w+a) LUTs, so p = ⌊cost(8,8)/cost(w,a)⌋
  (8×8 → 1, 4×4 → 3, 2×2 → 20).

How p maps onto the fold loop (the same rule for all dataflows): the p products of one PE share one
operand and produce p different outputs along the array's column dimension, so an R×C array of p-wide
PEs folds like an R×(C·p) array whose fill/drain still crosses C physical columns:

- output stationary: a PE holds p output accumulators (m, n..n+p−1), the activation a[m,k] is shared and a
  packed word of p weights arrives from above: ⌈M/R⌉·⌈N/(C·p)⌉ folds of K + R + C − 2 cycles;
- weight stationary: a PE holds p weights (k, n..n+p−1) that share the streaming activation:
  ⌈K/R⌉·⌈N/(C·p)⌉ folds of 2R + C + M − 2 cycles;
- input stationary: a PE holds p activations (k, m..m+p−1) that share the streaming weight:
  ⌈K/R⌉·⌈M/(C·p)⌉ folds of 2R + C + N − 2 cycles.
"""

from __future__ import annotations

from sim.errors import InputError
from sim.target import PE_KINDS

__all__ = ["PE_KINDS", "lut_multiplier_cost", "macs_per_pe"]

MAX_BITS = 8


def lut_multiplier_cost(weight_bits: int, act_bits: int) -> int:
    """LUTs of one LUT-based w×a multiplier, FINN's MVAU estimate (2⌈(w+a)/6⌉ − 1)·(w+a)."""
    width = weight_bits + act_bits
    return (2 * -(-width // 6) - 1) * width


def macs_per_pe(pe: str, weight_bits: int, act_bits: int) -> int:
    """MACs one PE of kind ``pe`` completes per cycle at ``weight_bits`` × ``act_bits`` (bits, 1..8)."""
    if pe not in PE_KINDS:
        raise InputError(f"unknown PE kind {pe!r}; expected one of {', '.join(PE_KINDS)}")
    for role, bits in (("weight", weight_bits), ("activation", act_bits)):
        if not 1 <= bits <= MAX_BITS:
            raise InputError(f"{role} bits {bits} not supported by a {pe!r} PE (1..{MAX_BITS})")
    if pe == "int8":
        return 1
    if pe == "bitfusion":
        return (8 // max(act_bits, 2)) * (8 // max(weight_bits, 2))
    if pe == "dsp_packed":
        return 4 if max(weight_bits, act_bits) <= 4 else 2
    return lut_multiplier_cost(8, 8) // lut_multiplier_cost(weight_bits, act_bits)
