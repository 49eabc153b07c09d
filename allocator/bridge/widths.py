"""The datapath widths a target gives the integer model: each GEMM's accumulator as its PE model sizes it.

``sim.resources.pe_accumulator_bits`` is the accumulator the resource model builds for a (weight, activation)
bit pair (wide enough for the longest reduction a design supports, at most 32 bits); the integer model
(``quant.integer.Widths``) then checks every accumulator it computes against the width of that GEMM's bits, so
an integer model verified or exported for a target uses only the widths that target's PEs have.
"""

from __future__ import annotations

from torch import nn

from quant.integer import Widths
from quant.plan import BitPlan
from quant.quantize import gemm_names
from sim.resources import pe_accumulator_bits

__all__ = ["datapath_widths"]


def datapath_widths(model: nn.Module, plan: BitPlan) -> Widths:
    """Per-GEMM accumulator widths (bits, sign included) from the PE model for ``plan``'s bits of each GEMM of
    ``model``; fixed-point tensors and the nonlinear operators keep ``Widths``' defaults (32 bits; row
    statistics 48)."""
    widths = {}
    for name in gemm_names(model):
        bits = plan.bits_for(name)
        widths[name] = pe_accumulator_bits(bits.wbits, bits.abits)
    return Widths(accumulator_bits=widths)
