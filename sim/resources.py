"""FPGA resource model: DSP, LUT, FF, BRAM36 and URAM of the accelerator laid on a target.

Components (``Resources.breakdown``): the PE array's multipliers, its accumulators, the on-chip buffers,
the vector unit (generic lanes for softmax/GELU/LayerNorm/requantization), nonlinear units of their own with
their row buffers (sim/nonlinear.py), an attention engine of its own when the target has one (sim/attention.py),
the off-chip memory interface, and control.
Formulas and where they come from:

- LUT multipliers, adder and accumulator LUTs: FINN's MVAU estimate (Blott et al., FINN-R, TRETS 2018;
  ``finn/custom_op/fpgadataflow/matrixvectoractivation.py::lut_estimation``):
  ``LUT = c0 + c1 * P * (mult + addertree + acc)`` with c0 = 300, c1 = 1.1,
  ``mult = Q * (2 * ceil((W + A) / 6) - 1) * (W + A)``, ``addertree = (W + A) * (2Q - 1)``, ``acc = acc_bits``.
  A systolic PE doing p products per cycle counts as p MVAU lanes with Q = 1.
- FF (FINN has no FF model): registers counted bit by bit: each PE's weight and activation registers
  (W + A bits, passed on to its neighbours) and its accumulators.
- Accumulator width: the data-type bound FINN uses (Colbert et al., arXiv 2301.13376):
  ``alpha = log2(K) + W + A - 1 - signed(A)``, ``acc_bits = ceil(alpha + log2(1 + 2**-alpha) + 1)``, at most 32.
- PE throughput p(w, a) (MACs per PE per cycle) is the simulator's ``sim.pe.macs_per_pe``: a ``dsp_packed`` PE
  is one DSP slice doing 2 INT8 (WP486) or 4 INT4 (DSP-Packing, arXiv 2203.11028) products, an ``int8`` PE
  is one unpacked HLS multiplier (FINN ``dsp_estimation``: ``ceil((W + A) / 48)`` = 1 DSP), a ``lut`` PE is a
  LUT budget of one 8x8 multiplier holding p narrower ones, a ``bitfusion`` PE is a Fusion Unit of 16 BitBricks.
  A PE doing p products per cycle needs p adders and p accumulators, so a mixed-precision array is sized for
  the supported bit pair that needs the most of them.
- BRAM36 = 36 Kbit, widest simple-dual-port shape 512 x 72; URAM = 4K x 72 = 288 Kbit (UG573). A buffer takes
  ``max(ceil(bits / capacity), ceil(port width / 72))`` blocks: enough capacity, and enough ports side by side
  to feed one row or column of the array per cycle.
- Memory controllers in the fabric: FINN ``finn/util/platforms.py`` DDR_RESOURCE_REQUIREMENTS (33,256 LUT,
  44,889 FF, 199 BRAM18, 3 DSP per DDR4 channel) and HBM_RESOURCE_REQUIREMENTS (10,718 LUT, 21,793 FF,
  8 BRAM18). Hardened controllers (Zynq PS DDR, Versal DDRMC) cost no fabric.

Reference accelerators with no FPGA (``device.kind == "asic"``): the figures are what the same array,
buffers and vector unit would take on a DSP48E2 FPGA fabric (useful to compare designs); ``fits`` is judged
only on on-chip SRAM (buffer bytes <= ``device.sram_bytes``) and ``utilisation()`` reports ``{"sram": ...}``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.errors import InputError
from sim.pe import lut_multiplier_cost, macs_per_pe
from sim.target import BRAM36_BITS, RESOURCE_NAMES, URAM_BITS, Target

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RESOURCE_NAMES",
    "ComponentResources",
    "Resources",
    "array_dsps",
    "bit_pairs",
    "dsps_per_multiplier",
    "estimate_resources",
    "pe_accumulator_bits",
]


# FINN-R MVAU LUT model constants (matrixvectoractivation.py::lut_estimation).
FINN_LUT_BASE = 300
FINN_LUT_SCALE = 1.1

#: Longest reduction (K) the accumulators are sized for: ViT-L/16 fc2 has K = 4096 (ViT-B 3072, DeiT-S 1536).
#: assumption: shipped models stay at or below ViT-L widths.
MAX_REDUCTION = 4096

PRIMITIVE_PORT_BITS = 72  # widest SDP port of a BRAM36 (512 x 72) and of a URAM (4K x 72), UG573

#: Multiplier shape (A x B bits) of each DSP kind: DSP48E1 25x18 (UG479), DSP48E2 27x18 (UG579), DSP58 27x24 (AM004).
DSP_MULTIPLIER_BITS = {"dsp48e1": (25, 18), "dsp48e2": (27, 18), "dsp58": (27, 24)}

# FINN platforms.py infrastructure costs (BRAM18 counts halved, rounded up, into BRAM36).
DDR_CONTROLLER = {"dsp": 3, "lut": 33_256, "ff": 44_889, "bram36": math.ceil(199 / 2), "uram": 0}
HBM_INTERFACE = {"dsp": 0, "lut": 10_718, "ff": 21_793, "bram36": math.ceil(8 / 2), "uram": 0}

# assumption: one AXI DataMover-style read/write master per memory channel: 2,000 LUT, 2,500 FF and 2 BRAM36
# for its FIFOs — the order of Xilinx PG022's AXI DataMover resource tables; not from a synthesis run here.
DATAMOVER = {"dsp": 0, "lut": 2_000, "ff": 2_500, "bram36": 2, "uram": 0}

# assumption: the vector unit's lane is a 32-bit integer datapath for I-ViT style Shiftmax/ShiftGELU/I-LayerNorm
# and dyadic requantization: one 32-bit adder (32 LUT), a 32-bit barrel shifter (3 levels of 4:1 LUT6 muxes,
# 96 LUT), a max/compare (32 LUT) and round/clamp (32 LUT) = 192 LUT; three 32-bit pipeline registers = 96 FF;
# one 32 x 32 multiply for requantization (acc * m, HAWQ-V3) on DSPs (count from the DSP's multiplier shape).
VECTOR_LANE_LUT = 192
VECTOR_LANE_FF = 96
VECTOR_MULTIPLY_BITS = 32

# assumption: top-level controller (instruction/loop sequencer, AXI-Lite registers, fold counters) on top of
# FINN's c0 = 300 LUT array base: 1,500 LUT and 2,000 FF.
CONTROL = {"dsp": 0, "lut": 1_500, "ff": 2_000, "bram36": 0, "uram": 0}

#: Bit Fusion fuses 16 BitBricks (2-bit x 2-bit) into one Fusion Unit (Sharma et al., ISCA 2018, Fig. 4).
BITBRICKS_PER_FUSION_UNIT = 16


@dataclass(frozen=True)
class ComponentResources:
    """Resources of one component of the design (counts of DSP slices, LUTs, FFs, BRAM36, URAM)."""

    component: str
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram36: int = 0
    uram: int = 0

    def to_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in RESOURCE_NAMES}


@dataclass(frozen=True)
class Resources:
    """Estimated resources of a target's accelerator built for ``weight_bits`` x ``act_bits`` operands.

    ``limits`` are the device counts times the caps (what ``fits`` is judged against on an FPGA);
    for an ASIC reference, ``fits`` compares buffer bytes with the chip's SRAM bytes instead.
    """

    target: str
    device_kind: str
    weight_bits: int
    act_bits: int
    dsp: int
    lut: int
    ff: int
    bram36: int
    uram: int
    breakdown: tuple[ComponentResources, ...]
    device_counts: tuple[tuple[str, int], ...]
    limits: tuple[tuple[str, float], ...]
    buffer_bytes: int
    sram_bytes: int
    fits: bool

    def to_dict(self) -> dict[str, int]:
        """The contract's JSON ``resources`` object: {"dsp","lut","ff","bram36","uram"} as ints."""
        return {name: int(getattr(self, name)) for name in RESOURCE_NAMES}

    def utilisation(self) -> dict[str, float]:
        """Used fraction of each device resource (FPGA), or ``{"sram": fraction}`` for an ASIC reference."""
        if self.device_kind == "asic":
            return {"sram": self.buffer_bytes / self.sram_bytes}
        counts = dict(self.device_counts)
        out: dict[str, float] = {}
        for name in RESOURCE_NAMES:
            used = getattr(self, name)
            out[name] = used / counts[name] if counts[name] else (0.0 if used == 0 else math.inf)
        return out

    def over_limits(self) -> list[str]:
        """Resources above the device's caps (empty when ``fits``)."""
        if self.device_kind == "asic":
            return [] if self.fits else ["sram"]
        limits = dict(self.limits)
        return [name for name in RESOURCE_NAMES if getattr(self, name) > limits[name]]

    def to_frame(self) -> pd.DataFrame:
        """One row per component plus ``total``; columns dsp, lut, ff, bram36, uram."""
        import pandas as pd

        rows = [{"component": part.component, **part.to_dict()} for part in self.breakdown]
        rows.append({"component": "total", **self.to_dict()})
        return pd.DataFrame(rows, columns=["component", *RESOURCE_NAMES]).set_index("component")


def pe_accumulator_bits(
    weight_bits: int, act_bits: int, max_reduction: int = MAX_REDUCTION, signed: bool = True
) -> int:
    """Accumulator width (bits) that cannot overflow over ``max_reduction`` products (arXiv 2301.13376), <= 32."""
    alpha = math.log2(max_reduction) + weight_bits + act_bits - 1 - int(signed)
    return min(32, math.ceil(alpha + math.log2(1 + 2.0**-alpha) + 1))


def _ceil(value: float) -> int:
    """Round a LUT estimate up, ignoring float noise (1.1 * 107520 is 118272.00000000001)."""
    return math.ceil(round(value, 6))


def bit_pairs(target: Target, weight_bits: int, act_bits: int) -> list[tuple[int, int]]:
    """The (weight, activation) bit pairs a design built for operands up to ``weight_bits`` x ``act_bits`` runs:
    every supported pair no wider than that, and the pair itself."""
    acc = target.accelerator
    pairs = {(w, a) for w in acc.weight_bits for a in acc.act_bits if w <= weight_bits and a <= act_bits}
    pairs.add((weight_bits, act_bits))
    return sorted(pairs)


def array_dsps(target: Target) -> int:
    """DSP slices of the target's PE array: one per ``dsp_packed`` PE, ``ceil((8 + 8) / 48) = 1`` per ``int8`` PE
    (FINN ``dsp_estimation``), none for LUT and Bit Fusion PEs.

    An ``int8`` PE that stands for a wider fixed-point multiplier (``accelerator.multiplier_bits`` = (w, a)) takes
    the DSP slices that multiplier tiles on the device's A x B multiplier, in the better orientation:
    min(ceil(a/A)·ceil(w/B), ceil(w/A)·ceil(a/B)); on DSP48E2 (27x18) 16x16 is 1, 16x32 is 2 (UG579)."""
    acc = target.accelerator
    if acc.pe not in ("dsp_packed", "int8"):
        return 0
    per_pe = 1
    if acc.pe == "int8" and acc.multiplier_bits is not None:
        per_pe = dsps_per_multiplier(target, *acc.multiplier_bits)
    return acc.rows * acc.cols * per_pe


def dsps_per_multiplier(target: Target, weight_bits: int, act_bits: int) -> int:
    """DSP slices one ``weight_bits`` x ``act_bits`` fixed-point multiplier tiles on the device's A x B multiplier,
    in the better orientation: min(ceil(a/A)·ceil(w/B), ceil(w/A)·ceil(a/B)) (UG579: 16x32 is 2 on DSP48E2)."""
    big, small = DSP_MULTIPLIER_BITS.get(target.device.dsp_kind, DSP_MULTIPLIER_BITS["dsp48e2"])
    w, a = weight_bits, act_bits
    return min(math.ceil(a / big) * math.ceil(w / small), math.ceil(w / big) * math.ceil(a / small))


def _products_per_pe(pe: str, weight_bits: int, act_bits: int) -> int:
    """``macs_per_pe``, and 1 for an ``int8`` PE at any width (one wider multiplier, ``multiplier_bits``)."""
    return 1 if pe == "int8" else macs_per_pe(pe, weight_bits, act_bits)


def _per_pe_luts(pe: str, weight_bits: int, act_bits: int) -> int:
    """Multiplier and adder LUTs of one PE running ``p = macs_per_pe`` products of this bit pair per cycle."""
    p = _products_per_pe(pe, weight_bits, act_bits)
    adders = p * (weight_bits + act_bits)  # FINN adder term (W + A)(2Q - 1) with Q = 1, once per product
    if pe in ("dsp_packed", "int8"):
        return adders  # the products themselves are in the DSP
    if pe == "lut":
        return p * lut_multiplier_cost(weight_bits, act_bits) + adders
    # bitfusion: 16 BitBricks (2x2-bit LUT multipliers) and a shift-add tree over them: FINN's adder-tree term
    # with Q = 16 lanes at the fused width
    lanes = BITBRICKS_PER_FUSION_UNIT
    return lanes * lut_multiplier_cost(2, 2) + (weight_bits + act_bits) * (2 * lanes - 1)


def datapath_pairs(target: Target, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (weight, activation) bit pairs the PE datapath is built for: ``pairs``, or for an ``int8`` PE standing
    for a wider multiplier (``accelerator.multiplier_bits``) that multiplier's bits, which set its adder,
    register and accumulator widths as they set its DSP count (``array_dsps``)."""
    bits = target.accelerator.multiplier_bits
    return pairs if bits is None else [bits]


def _array(target: Target, pairs: list[tuple[int, int]]) -> ComponentResources:
    acc = target.accelerator
    pairs = datapath_pairs(target, pairs)
    pes = acc.rows * acc.cols
    per_pe = max(_per_pe_luts(acc.pe, w, a) for w, a in pairs)
    lut = FINN_LUT_BASE + FINN_LUT_SCALE * pes * per_pe
    # a systolic PE registers the weight and the activation it passes on (Kung, 1982), at the widest pair
    width = max(w + a for w, a in pairs)
    if acc.per_layer_dataflow:
        # a reconfigurable array selects each operand bit of each PE from up to three sources (OS, WS, IS); a LUT6
        # is a 4:1 multiplexer of one bit (Xilinx UG474, 7 Series CLB guide, "Multiplexers"), so one LUT per
        # operand bit per PE
        lut += pes * width
    return ComponentResources("array", dsp=array_dsps(target), lut=_ceil(lut), ff=pes * width)


def _accumulators(target: Target, pairs: list[tuple[int, int]]) -> ComponentResources:
    acc = target.accelerator
    pairs = datapath_pairs(target, pairs)
    # a PE doing p products per cycle keeps p accumulators: size for the pair with the most accumulator bits
    per_pe_bits = max(_products_per_pe(acc.pe, w, a) * pe_accumulator_bits(w, a) for w, a in pairs)
    bits = acc.rows * acc.cols * per_pe_bits
    if any(dataflow in ("ws", "is") for dataflow in acc.dataflows):
        # partial sums leave the array every K fold and are accumulated at the column bottoms
        bits += acc.cols * max(pe_accumulator_bits(w, a) for w, a in pairs)
    return ComponentResources("accumulators", lut=_ceil(FINN_LUT_SCALE * bits), ff=bits)


def _buffer_blocks(size_bytes: int, port_bits: int, memory: str) -> tuple[int, int]:
    """(BRAM36, URAM) blocks for one buffer: enough capacity and enough 72-bit ports side by side."""
    capacity_bits = URAM_BITS if memory == "uram" else BRAM36_BITS
    blocks = max(math.ceil(size_bytes * 8 / capacity_bits), math.ceil(port_bits / PRIMITIVE_PORT_BITS))
    return (0, blocks) if memory == "uram" else (blocks, 0)


def _buffers(target: Target, weight_bits: int, act_bits: int) -> ComponentResources:
    acc = target.accelerator
    buffers = acc.buffers
    # Which edge each operand enters (SCALE-Sim's mapping): OS and WS stream activations into the R rows and
    # weights across the C columns; IS keeps activations in the array and streams weights into the rows.
    # A reconfigurable array's buffers are as wide as its widest mode needs.
    rows_edge, cols_edge = acc.rows, acc.cols
    ifmap_lanes = max(rows_edge if d in ("os", "ws") else cols_edge for d in acc.dataflows)
    filter_lanes = max(cols_edge if d in ("os", "ws") else rows_edge for d in acc.dataflows)
    ports = {
        "ifmap": (buffers.ifmap_bytes, ifmap_lanes * act_bits, buffers.ifmap_memory),
        "filter": (buffers.filter_bytes, filter_lanes * weight_bits, buffers.filter_memory),
        "ofmap": (buffers.ofmap_bytes, cols_edge * pe_accumulator_bits(weight_bits, act_bits), buffers.ofmap_memory),
    }
    bram36 = uram = 0
    for size, port_bits, memory in ports.values():
        b, u = _buffer_blocks(size, port_bits, memory)
        bram36 += b
        uram += u
    return ComponentResources("buffers", bram36=bram36, uram=uram)


def _vector_unit(target: Target) -> ComponentResources:
    lanes = target.accelerator.vector_lanes
    a, b = DSP_MULTIPLIER_BITS.get(target.device.dsp_kind, DSP_MULTIPLIER_BITS["dsp48e2"])
    dsp_per_multiply = math.ceil(VECTOR_MULTIPLY_BITS / a) * math.ceil(VECTOR_MULTIPLY_BITS / b)
    return ComponentResources(
        "vector_unit", dsp=lanes * dsp_per_multiply, lut=lanes * VECTOR_LANE_LUT, ff=lanes * VECTOR_LANE_FF
    )


def _nonlinear_units(target: Target) -> ComponentResources:
    """Units of their own for nonlinear operators (sim/nonlinear.py): the LUT/FF/DSP the target file gives, and
    for softmax/LayerNorm a double-buffered row buffer in BRAM36, wide enough to feed ``elements_per_cycle``
    elements of ``row_buffer_bits`` per cycle."""
    totals = {"dsp": 0, "lut": 0, "ff": 0, "bram36": 0}
    for unit in target.accelerator.nonlinear.own_units:
        totals["dsp"] += unit.dsp
        totals["lut"] += unit.lut
        totals["ff"] += unit.ff
        if unit.row_wise:
            bits = 2 * unit.row_buffer_elements * unit.row_buffer_bits
            port = math.ceil(unit.elements_per_cycle) * unit.row_buffer_bits
            totals["bram36"] += max(math.ceil(bits / BRAM36_BITS), math.ceil(port / PRIMITIVE_PORT_BITS))
    return ComponentResources("nonlinear_units", **totals)


def _attention_engine(target: Target, pairs: list[tuple[int, int]]) -> ComponentResources:
    """The attention engine (sim/attention.py): instances x queries x dims multipliers on DSPs (its own
    ``multiplier_bits``, else the array's, else the widest simulated pair), each with an adder and an accumulator
    (LUT: FINN's adder and accumulator terms; FF: the accumulator register and the operand registers), and its
    key/value buffer in BRAM36."""
    engine = target.accelerator.attention
    assert engine is not None
    bits = engine.multiplier_bits or target.accelerator.multiplier_bits
    w, a = bits if bits is not None else max(pairs, key=lambda pair: pair[0] + pair[1])
    macs = engine.macs_per_cycle * engine.instances
    accumulator = pe_accumulator_bits(w, a)
    return ComponentResources(
        "attention_engine",
        dsp=macs * dsps_per_multiplier(target, w, a),
        lut=_ceil(FINN_LUT_SCALE * macs * (w + a + accumulator)),
        ff=macs * (w + a + accumulator),
        bram36=math.ceil(engine.buffer_kib * 1024 * 8 / BRAM36_BITS),
    )


def _engines(target: Target, pairs: list[tuple[int, int]]) -> list[ComponentResources]:
    """Each further GEMM array (``accelerator.engines``): its PEs and accumulators by the main array's rules, on
    its own rows x cols (it shares the main array's buffers: an assumption)."""
    parts = []
    for engine in target.accelerator.engines:
        shaped = target.on_engine(engine)
        for part in (_array(shaped, pairs), _accumulators(shaped, pairs)):
            parts.append(dataclasses.replace(part, component=f"{part.component}:{engine.name}"))
    return parts


def _memory_interface(target: Target) -> ComponentResources:
    memory = target.memory
    totals = {name: DATAMOVER[name] * memory.channels for name in RESOURCE_NAMES}
    if memory.controller == "soft":
        for name in RESOURCE_NAMES:
            totals[name] += DDR_CONTROLLER[name] * memory.channels
    elif memory.kind.startswith("hbm"):
        for name in RESOURCE_NAMES:
            totals[name] += HBM_INTERFACE[name]
    return ComponentResources("memory_interface", **totals)


def _control() -> ComponentResources:
    return ComponentResources("control", **CONTROL)


def estimate_resources(target: Target, weight_bits: int | None = None, act_bits: int | None = None) -> Resources:
    """DSP, LUT, FF, BRAM36 and URAM of ``target``'s accelerator built for ``weight_bits`` x ``act_bits`` (bits).

    The design runs every supported bit pair up to ``weight_bits`` x ``act_bits`` (``bit_pairs``); the defaults are
    the widest bits the target supports, i.e. all of its pairs. ``fits`` compares each total with device count x cap
    (FPGA), or buffer bytes with the chip's SRAM (ASIC).
    """
    acc = target.accelerator
    weight_bits = max(acc.weight_bits) if weight_bits is None else weight_bits
    act_bits = max(acc.act_bits) if act_bits is None else act_bits
    for name, value in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
            raise InputError(f"{target.name}: {name}: resources are modelled for 1..8-bit operands, got {value!r}")
    pairs = bit_pairs(target, weight_bits, act_bits)
    parts = (
        _array(target, pairs),
        _accumulators(target, pairs),
        _buffers(target, weight_bits, act_bits),
        _vector_unit(target),
        _nonlinear_units(target),
        *((_attention_engine(target, pairs),) if acc.attention is not None else ()),
        *_engines(target, pairs),
        _memory_interface(target),
        _control(),
    )
    totals = {name: sum(getattr(part, name) for part in parts) for name in RESOURCE_NAMES}
    device, caps = target.device, target.caps
    counts = tuple((name, int(getattr(device, name))) for name in RESOURCE_NAMES)
    limits = tuple((name, getattr(device, name) * getattr(caps, name)) for name in RESOURCE_NAMES)
    buffer_bytes = acc.buffers.total_bytes
    if device.kind == "asic":
        fits = buffer_bytes <= device.sram_bytes
    else:
        fits = all(totals[name] <= limit for name, limit in limits)
    return Resources(
        target=target.name,
        device_kind=device.kind,
        weight_bits=weight_bits,
        act_bits=act_bits,
        breakdown=parts,
        device_counts=counts,
        limits=limits,
        buffer_bytes=buffer_bytes,
        sram_bytes=device.sram_bytes,
        fits=fits,
        **totals,
    )
