"""Dynamic energy of a simulated layer: per-operation energies by bit width and PE kind, per-byte SRAM and DRAM.

Accelergy-style: every action has an energy per action and a source; a layer's energy is the sum over its
actions of count × energy. Static (leakage) power is not modelled. Units: picojoules (pJ) per action, results
in millijoules (mJ; 1 mJ = 1e9 pJ).

Base energies (45 nm, 0.9 V), M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, Fig. 1.1.9 (as reproduced in Sze et al., "Efficient Processing of Deep Neural Networks", 2020,
Table 3.1): 8-bit integer add 0.03 pJ, 32-bit integer add 0.1 pJ, 8-bit integer multiply 0.2 pJ; SRAM read of
64 bits from an 8 KB array 10 pJ, from a 32 KB array 20 pJ; DRAM 1.3–2.6 nJ per 64-bit access.

- A w×a multiply costs 0.2 pJ · w·a/64 (an array multiplier's partial products grow with w·a; scaling is an
  assumption). An accumulate costs 0.1 pJ · acc_bits/32 (adder energy linear in width, from the 8- and 32-bit
  adds above).
- PE kinds: ``int8`` always multiplies at 8×8; ``dsp_packed`` runs one 27×18 DSP multiply per cycle shared by its
  p products (0.2 pJ · 27·18/64 / p per MAC); ``bitfusion`` runs 16 2×2 BitBricks per cycle shared by its p
  products; ``lut`` multiplies at w×a.
- FPGA fabric: Kuon & Rose, "Measuring the Gap Between FPGAs and ASICs", IEEE TCAD 26(2), 2007, abstract:
  dynamic power ≈ 14× the ASIC's for LUT/FF logic, smaller with hard blocks. We apply 14× to LUT logic and,
  as an assumption, 7× (half) to hard DSP and BRAM/URAM blocks. ASIC reference targets use factor 1.
- SRAM per byte: BRAM36 (4.5 KB) at the 8 KB figure, 10/8 = 1.25 pJ/byte; URAM (36 KB) and ASIC SRAM at the
  32 KB figure, 2.5 pJ/byte. SRAM traffic is what moves between the buffers and the array edges (every tile
  each fold reads, WS/IS partial sums, outputs written) plus the DRAM bytes written into or read out of them.
- DRAM per byte: DDR3/DDR4/LPDDR4 at Horowitz's low end, 1.3 nJ / 8 bytes = 162.5 pJ/byte (LPDDR4 is lower in
  practice; assumption: the same figure); HBM2 3.9 pJ/bit = 31.2 pJ/byte (O'Connor et al., "Fine-Grained DRAM",
  MICRO 2017, Sec. 2). With ideal memory no DRAM bytes are counted.
- Nonlinear operators: one lane operation (shift, add, compare, the I-ViT counts of sim/simulate.py) costs a
  32-bit add, 0.1 pJ, × the LUT-logic factor, on the lanes or on an own unit alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.pe import macs_per_pe

__all__ = ["EnergyModel", "energy_model", "gemm_energy_pj", "sram_bytes"]

PJ_PER_MJ = 1e9

MULT_8x8_PJ = 0.2  # Horowitz 2014
ADD_32_PJ = 0.1  # Horowitz 2014
SRAM_8KB_PJ_PER_BYTE = 10.0 / 8  # Horowitz 2014, 64-bit read of an 8 KB SRAM
SRAM_32KB_PJ_PER_BYTE = 20.0 / 8  # Horowitz 2014, 64-bit read of a 32 KB SRAM
DRAM_PJ_PER_BYTE = {"ddr3": 1300.0 / 8, "ddr4": 1300.0 / 8, "lpddr4": 1300.0 / 8, "hbm2": 3.9 * 8}
FPGA_LOGIC_FACTOR = 14.0  # Kuon & Rose 2007
FPGA_HARD_BLOCK_FACTOR = 7.0  # assumption: half the logic gap (Kuon & Rose: "generally becomes smaller")
DSP_MULTIPLIER_BITS = 27 * 18  # DSP48E2 (UG579)
BITBRICKS = 16  # Bit Fusion fusion unit (Sharma et al., ISCA 2018)


@dataclass(frozen=True)
class EnergyModel:
    """Energies (pJ) of one target's actions; see the module docstring for where each comes from."""

    pe: str
    logic_factor: float
    hard_factor: float
    sram_pj_per_byte: float
    dram_pj_per_byte: float
    lane_op_pj: float

    def mac_pj(self, weight_bits: int, act_bits: int, acc_bits: int = 32) -> float:
        """Energy of one multiply-accumulate at these widths on this PE kind (pJ)."""
        p = macs_per_pe(self.pe, weight_bits, act_bits)
        accumulate = ADD_32_PJ * acc_bits / 32 * self.logic_factor
        if self.pe == "int8":
            multiply = MULT_8x8_PJ * self.hard_factor
        elif self.pe == "dsp_packed":
            multiply = MULT_8x8_PJ * DSP_MULTIPLIER_BITS / 64 / p * self.hard_factor
        elif self.pe == "bitfusion":
            multiply = MULT_8x8_PJ * BITBRICKS * 4 / 64 / p * self.logic_factor
        else:  # lut
            multiply = MULT_8x8_PJ * weight_bits * act_bits / 64 * self.logic_factor
        return multiply + accumulate


def energy_model(target: object) -> EnergyModel:
    """The energy model of ``target`` (a ``sim.Target``)."""
    device = target.device  # type: ignore[attr-defined]
    acc = target.accelerator  # type: ignore[attr-defined]
    fpga = device.kind == "fpga"
    logic = FPGA_LOGIC_FACTOR if fpga else 1.0
    hard = FPGA_HARD_BLOCK_FACTOR if fpga else 1.0
    memories = {acc.buffers.ifmap_memory, acc.buffers.filter_memory, acc.buffers.ofmap_memory}
    sram = SRAM_8KB_PJ_PER_BYTE * hard if memories == {"bram36"} else SRAM_32KB_PJ_PER_BYTE * hard
    dram = DRAM_PJ_PER_BYTE.get(target.memory.kind, DRAM_PJ_PER_BYTE["ddr4"])  # type: ignore[attr-defined]
    return EnergyModel(acc.pe, logic, hard, sram, dram, ADD_32_PJ * logic)


def sram_bytes(
    dataflow: str, rows: int, cols: int, lanes: int, m: int, n: int, k: int, count: int, act_bits: int, weight_bits: int
) -> int:
    """Bytes moved between the on-chip buffers and the array edges for ``count`` M×K·K×N GEMMs.

    OS re-reads each R-row block of A for every column tile and each column tile of B for every row block;
    WS re-reads A per column tile, IS re-reads B per row tile; WS/IS write and read back 32-bit partial sums
    between K folds; outputs are written once at the activation bits.
    """
    wide = cols * lanes
    a_bytes = math.ceil(m * k * act_bits / 8)
    b_bytes = math.ceil(k * n * weight_bits / 8)
    out_bytes = math.ceil(m * n * act_bits / 8)
    if dataflow == "os":
        moved = a_bytes * math.ceil(n / wide) + b_bytes * math.ceil(m / rows) + out_bytes
    else:
        k_folds = math.ceil(k / rows)
        psum = 2 * 4 * (k_folds - 1) * m * n
        if dataflow == "ws":
            moved = a_bytes * math.ceil(n / wide) + b_bytes + out_bytes + psum
        else:
            moved = a_bytes + b_bytes * math.ceil(m / wide) + out_bytes + psum
    return moved * count


def gemm_energy_pj(
    model: EnergyModel,
    dataflow: str,
    rows: int,
    cols: int,
    m: int,
    n: int,
    k: int,
    count: int,
    weight_bits: int,
    act_bits: int,
    dram_bytes: int,
) -> float:
    """Energy (pJ) of ``count`` M×K·K×N GEMMs: MACs, SRAM traffic and ``dram_bytes`` of DRAM traffic."""
    lanes = macs_per_pe(model.pe, weight_bits, act_bits)
    macs = m * n * k * count
    acc_bits = min(32, math.ceil(math.log2(max(k, 2))) + weight_bits + act_bits)
    on_chip = sram_bytes(dataflow, rows, cols, lanes, m, n, k, count, act_bits, weight_bits) + dram_bytes
    return (
        macs * model.mac_pj(weight_bits, act_bits, acc_bits)
        + on_chip * model.sram_pj_per_byte
        + (dram_bytes * model.dram_pj_per_byte)
    )
