"""Public simulator API: ``simulate``, ``cost_table``, ``vector_cycles`` and their result types.

Whole-model cycles are the sum of per-layer cycles (GEMMs and vector operators run one after another), so
costs add up for the ILP. The timing rules are in sim/kernels.py's docstring, the PE widths in sim/pe.py.

Choices stated here:

- Outputs of a GEMM are written back at the layer's activation bits (the requantization to the next
  layer's input precision happens on chip, on the vector unit, before the write-back).
- Vector operators work on tiles already on chip (fused behind the GEMM that produces them), so they move
  no DRAM bytes; they are reported as layers with m = n = k = 0 and wbits = abits = 0, and their
  ``compute_cycles`` = ``cycles`` = ⌈elements · lane-ops per element / lanes⌉.
- Lane operations per element (``VECTOR_OPS_PER_ELEMENT``) count the integer shifts, adds, multiplies and
  compares of I-ViT's integer-only operators (Li & Gu, "I-ViT: Integer-only Quantization for Efficient
  Vision Transformer Inference", ICCV 2023; as implemented in quant/intops.py), one lane op per cycle per
  lane. The counts are ours (assumption), from reading those algorithms:
  softmax (Shiftmax) 13 = max 1, subtract 1, x·log2e ≈ x + (x>>1) − (x>>4) 4, split into integer and
  fraction 2, 2^fraction and shift 2, sum 1, reciprocal multiply and shift 2;
  GELU (ShiftGELU, x·σ(1.702x)) 17 = 1.702x ≈ x + (x>>1) + (x>>3) + (x>>4) 6, Shift-exp of it and of the
  max 2×4, divide 2, multiply by x 1; LayerNorm (I-LayerNorm) 7 = sum 1, subtract mean 1, square 1,
  accumulate 1, normalise (subtract, multiply, shift) 3 (the per-row integer Newton square root is
  amortised over the row and left out); residual add 4 = dyadic rescale of one input (multiply, add,
  shift) 3 + add 1; requantization 4 = HAWQ-V3 dyadic (acc·m + 2^(s−1)) >> s: multiply, add, shift, clamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim import kernels
from sim.errors import InputError
from sim.pe import macs_per_pe
from sim.target import Target
from sim.workload import Gemm, VectorOp, Workload

if TYPE_CHECKING:
    from sim.resources import Resources

__all__ = [
    "VECTOR_OPS_PER_ELEMENT",
    "LayerResult",
    "SimResult",
    "cost_table",
    "resolve_bits",
    "simulate",
    "vector_cycles",
    "with_array",
]

DATAFLOW_CODES = {"os": kernels.OS, "ws": kernels.WS, "is": kernels.IS}

# lane operations per element, see the module docstring (assumption, counted from I-ViT's algorithms)
VECTOR_OPS_PER_ELEMENT: dict[str, int] = {"softmax": 13, "gelu": 17, "layernorm": 7, "add": 4, "requant": 4}

Bits = tuple[int, int]

COST_COLUMNS = [
    "name", "kind", "wbits", "abits", "m", "n", "k", "count", "macs", "weight_params",
    "compute_cycles", "stall_cycles", "cycles",
]  # fmt: skip


@dataclass(frozen=True)
class LayerResult:
    """One operator's simulated cost (cycles). Vector operators have m = n = k = 0 and no bits."""

    name: str
    kind: str
    m: int
    n: int
    k: int
    wbits: int
    abits: int
    compute_cycles: int
    stall_cycles: int
    cycles: int
    count: int = 1  # back-to-back repeats of a GEMM (attention heads); not in the contract's JSON rows

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k * self.count

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _LAYER_COLUMNS}


@dataclass(frozen=True)
class SimResult:
    """A workload simulated on a target: total cycles, latency (ms) at the target clock (MHz), resources."""

    target: str
    model: str
    clock_mhz: float
    rows: int
    cols: int
    dataflow: str
    pe: str
    ideal_memory: bool
    cycles: int
    latency_ms: float
    fits: bool
    resources: Resources
    layers: tuple[LayerResult, ...]
    bytes_read: int
    bytes_written: int

    @property
    def compute_cycles(self) -> int:
        return sum(layer.compute_cycles for layer in self.layers)

    @property
    def stall_cycles(self) -> int:
        return sum(layer.stall_cycles for layer in self.layers)

    @property
    def utilisation(self) -> float:
        """Fraction of PE cycles (rows × cols × total cycles) that do a PE's worth of MACs (MACs / p)."""
        busy = sum(layer.macs / macs_per_pe(self.pe, layer.wbits, layer.abits) for layer in self.layers if layer.m)
        return busy / (self.rows * self.cols * self.cycles) if self.cycles else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per layer (GEMMs and vector operators, in execution order)."""
        return pd.DataFrame([layer.to_json() for layer in self.layers], columns=_LAYER_COLUMNS)

    def to_json(self) -> dict[str, Any]:
        """The ``mixbit simulate --json`` object of the interface contract."""
        return {
            "target": self.target,
            "model": self.model,
            "clock_mhz": float(self.clock_mhz),
            "cycles": int(self.cycles),
            "latency_ms": float(self.latency_ms),
            "fits": bool(self.fits),
            "resources": {key: int(getattr(self.resources, key)) for key in _RESOURCE_KEYS},
            "layers": [layer.to_json() for layer in self.layers],
        }


_LAYER_COLUMNS = ["name", "kind", "m", "n", "k", "wbits", "abits", "compute_cycles", "stall_cycles", "cycles"]
_RESOURCE_KEYS = ("dsp", "lut", "ff", "bram36", "uram")


def with_array(target: Target, rows: int | None = None, cols: int | None = None, dataflow: str | None = None) -> Target:
    """``target.replace_array(...)``: its array's rows, columns or dataflow replaced (None keeps the target's)."""
    return target.replace_array(rows=rows, cols=cols, dataflow=dataflow)


def resolve_bits(workload: Workload, target: Target, bits: Bits | Mapping[str, Bits]) -> dict[str, Bits]:
    """(wbits, abits) for every GEMM of ``workload``, checked against the target's supported bits.

    ``bits`` is one pair for all GEMMs or a mapping from GEMM name to a pair; a mapping must name every GEMM
    of the workload and nothing else.
    """
    names = [g.name for g in workload.gemms]
    if isinstance(bits, Mapping):
        known = set(names)
        unknown = sorted(set(bits) - known)
        if unknown:
            raise InputError(f"bit plan names {unknown[0]!r}, which is not a GEMM of workload {workload.name!r}")
        missing = [name for name in names if name not in bits]
        if missing:
            raise InputError(f"bit plan has no bits for layer {missing[0]!r} of workload {workload.name!r}")
        plan = {name: _pair(bits[name], name) for name in names}
    else:
        pair = _pair(bits, "all layers")
        plan = dict.fromkeys(names, pair)
    acc = target.accelerator
    for name, (wbits, abits) in plan.items():
        if wbits not in acc.weight_bits or abits not in acc.act_bits:
            raise InputError(
                f"layer {name!r}: wbits={wbits}, abits={abits} not supported by target {target.name!r} "
                f"(weight bits {list(acc.weight_bits)}, activation bits {list(acc.act_bits)})"
            )
    return plan


def _pair(value: Any, where: str) -> Bits:
    try:
        wbits, abits = value
    except (TypeError, ValueError):
        raise InputError(f"bits for {where}: expected a (wbits, abits) pair, got {value!r}") from None
    for role, b in (("wbits", wbits), ("abits", abits)):
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b <= 0:
            raise InputError(f"bits for {where}: {role}={b!r}; must be a positive integer")
    return int(wbits), int(abits)


def _check_gemm(gemm: Gemm) -> None:
    for dim in ("m", "n", "k", "count"):
        value = getattr(gemm, dim)
        if value <= 0:
            raise InputError(f"GEMM {gemm.name!r} has {dim}={value}; must be > 0")


def _gemm_costs(
    gemms: Iterable[Gemm], plan: Mapping[str, Bits], target: Target, ideal_memory: bool
) -> dict[tuple[str, Bits], np.ndarray]:
    """(compute, total, bytes read, bytes written) per (GEMM name, bits); each distinct shape simulated once."""
    acc = target.accelerator
    keys: dict[tuple[int, ...], int] = {}
    wanted: list[tuple[str, Bits, tuple[int, ...]]] = []
    for gemm in gemms:
        _check_gemm(gemm)
        wbits, abits = plan[gemm.name]
        lanes = macs_per_pe(acc.pe, wbits, abits)
        key = (lanes, gemm.m, gemm.n, gemm.k, gemm.count, abits, wbits, abits)
        keys.setdefault(key, len(keys))
        wanted.append((gemm.name, (wbits, abits), key))
    if not keys:
        return {}
    shapes = np.array(list(keys), dtype=np.int64).reshape(len(keys), 8)
    buffers = acc.buffers
    rows = kernels._gemm_cycles_many(
        DATAFLOW_CODES[acc.dataflow],
        acc.rows,
        acc.cols,
        shapes,
        buffers.ifmap_bytes,
        buffers.filter_bytes,
        buffers.ofmap_bytes,
        float(target.bytes_per_cycle),
        bool(ideal_memory),
    )
    return {(name, pair): rows[keys[key]] for name, pair, key in wanted}


def _vector_layers(workload: Workload, target: Target) -> dict[str, int]:
    ops = workload.vector_ops
    if not ops:
        return {}
    for op in ops:
        if op.kind not in VECTOR_OPS_PER_ELEMENT:
            raise InputError(f"vector operator {op.name!r} has unknown kind {op.kind!r}")
        if op.elements <= 0:
            raise InputError(f"vector operator {op.name!r} has elements={op.elements}; must be > 0")
    elements = np.array([op.elements for op in ops], dtype=np.int64)
    per_element = np.array([VECTOR_OPS_PER_ELEMENT[op.kind] for op in ops], dtype=np.int64)
    cycles = kernels._vector_cycles(elements, per_element, target.accelerator.vector_lanes)
    return {op.name: int(c) for op, c in zip(ops, cycles, strict=True)}


def vector_cycles(workload: Workload, target: Target) -> int:
    """Cycles of all vector-unit operators of ``workload`` (independent of bits)."""
    return sum(_vector_layers(workload, target).values())


def simulate(
    workload: Workload,
    target: Target,
    bits: Bits | Mapping[str, Bits] = (8, 8),
    *,
    rows: int | None = None,
    cols: int | None = None,
    dataflow: str | None = None,
    ideal_memory: bool = False,
) -> SimResult:
    """Simulate ``workload`` on ``target`` at ``bits`` (one (wbits, abits) pair or a per-GEMM mapping).

    ``rows``/``cols``/``dataflow`` override the target's array. With ``ideal_memory`` (infinite bandwidth,
    operands on chip) every layer's stall cycles are 0.
    """
    from sim.resources import estimate_resources

    target = with_array(target, rows, cols, dataflow)
    plan = resolve_bits(workload, target, bits)
    costs = _gemm_costs(workload.gemms, plan, target, ideal_memory)
    vector = _vector_layers(workload, target)
    layers = []
    bytes_read = bytes_written = 0
    for op in workload.ops:
        if isinstance(op, Gemm):
            wbits, abits = plan[op.name]
            compute, total, read, written = (int(v) for v in costs[(op.name, (wbits, abits))])
            bytes_read += read
            bytes_written += written
            layers.append(
                LayerResult(op.name, op.kind, op.m, op.n, op.k, wbits, abits, compute, total - compute, total, op.count)
            )
        elif isinstance(op, VectorOp):
            c = vector[op.name]
            layers.append(LayerResult(op.name, op.kind, 0, 0, 0, 0, 0, c, 0, c))
    cycles = sum(layer.cycles for layer in layers)
    wbits_used = max((w for w, _ in plan.values()), default=None)
    abits_used = max((a for _, a in plan.values()), default=None)
    resources = estimate_resources(target, wbits_used, abits_used)
    return SimResult(
        target=target.name,
        model=workload.name,
        clock_mhz=float(target.clock_mhz),
        rows=target.accelerator.rows,
        cols=target.accelerator.cols,
        dataflow=target.accelerator.dataflow,
        pe=target.accelerator.pe,
        ideal_memory=bool(ideal_memory),
        cycles=cycles,
        latency_ms=cycles / (target.clock_mhz * 1e3),
        fits=bool(resources.fits),
        resources=resources,
        layers=tuple(layers),
        bytes_read=bytes_read,
        bytes_written=bytes_written,
    )


def cost_table(
    workload: Workload, target: Target, bit_pairs: Iterable[Bits], *, ideal_memory: bool = False
) -> pd.DataFrame:
    """One row per (GEMM, wbits, abits): name, kind, wbits, abits, m, n, k, count, macs, weight_params,
    compute_cycles, stall_cycles, cycles. Each distinct (shape, bits) is simulated once.

    Every pair must be supported by the target (else InputError). Vector-unit cycles are not in this table:
    add ``vector_cycles(workload, target)``.
    """
    pairs = [_pair(p, "cost table") for p in bit_pairs]
    gemms = workload.gemms
    plan_rows = []
    for pair in dict.fromkeys(pairs):
        plan = resolve_bits(workload, target, pair)
        costs = _gemm_costs(gemms, plan, target, ideal_memory)
        for gemm in gemms:
            compute, total = (int(v) for v in costs[(gemm.name, pair)][:2])
            plan_rows.append(
                (
                    gemm.name,
                    gemm.kind,
                    pair[0],
                    pair[1],
                    gemm.m,
                    gemm.n,
                    gemm.k,
                    gemm.count,
                    gemm.macs,
                    gemm.weight_params,
                    compute,
                    total - compute,
                    total,
                )
            )
    return pd.DataFrame(plan_rows, columns=COST_COLUMNS)
