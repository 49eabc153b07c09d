"""Public simulator API: ``simulate``, ``cost_table``, ``vector_cycles`` and their result types.

Whole-model cycles are the sum of per-layer cycles (GEMMs and vector operators run one after another), so
costs add up for the ILP. The timing rules are in sim/kernels.py's docstring, the PE widths in sim/pe.py.

Choices stated here:

- Outputs of a GEMM are written back at the layer's activation bits (the requantization to the next
  layer's input precision happens on chip, on the vector unit, before the write-back).
- Vector operators work on tiles already on chip, so they move no DRAM bytes; they are reported as layers
  with m = n = k = 0 and wbits = abits = 0. Where each runs (generic lanes or a unit of its own), how fast,
  and whether it is fused to the GEMM that produces its input is the target's (sim/nonlinear.py). An unfused
  operator's ``compute_cycles`` = ``cycles`` = its unit's cycles (lanes: ⌈elements · lane-ops per element /
  lanes⌉ + depth). A fused operator reports ``cycles`` = 0 and ``fused_into`` = its GEMM; what the fused
  chain adds after that GEMM ends is on the GEMM's row as ``fused_cycles`` (part of its ``cycles``), so
  layer cycles still add up to the whole model and ``cost_table`` (GEMM rows, fused tails included) plus
  ``vector_cycles`` (unfused operators) gives every plan's total exactly.
- ``bytes_read`` / ``bytes_written``: each GEMM's DRAM traffic from the memory model (sim/kernels.py);
  ``energy_mj``: dynamic energy from sim/energy.py.
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

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from sim import kernels
from sim.attention import attention_bytes, engine_cycles
from sim.energy import PJ_PER_MJ, energy_model, gemm_energy_pj
from sim.errors import InputError
from sim.nonlinear import ROW_WISE_KINDS
from sim.patchwise import TokenSplit, costed_rows, high_rows
from sim.pe import macs_per_pe
from sim.target import PER_LAYER, RESOURCE_NAMES, Target
from sim.workload import Gemm, VectorOp, Workload

if TYPE_CHECKING:
    from sim.resources import Resources

__all__ = [
    "INT64_MAX",
    "MAX_EVENT_FOLDS",
    "VECTOR_OPS_PER_ELEMENT",
    "LayerResult",
    "SimResult",
    "cost_table",
    "resolve_bits",
    "resolve_token_splits",
    "simulate",
    "token_split_cost_table",
    "vector_cycles",
    "vector_energy_mj",
    "with_array",
]

DATAFLOW_CODES = {"os": kernels.OS, "ws": kernels.WS, "is": kernels.IS}

# lane operations per element, see the module docstring (assumption, counted from I-ViT's algorithms)
VECTOR_OPS_PER_ELEMENT: dict[str, int] = {"softmax": 13, "gelu": 17, "layernorm": 7, "add": 4, "requant": 4}

Bits = tuple[int, int]

COST_COLUMNS = [
    "name", "kind", "wbits", "abits", "m", "n", "k", "count", "macs", "weight_params",
    "compute_cycles", "stall_cycles", "fused_cycles", "cycles", "bytes_read", "bytes_written", "energy_mj",
    "dataflow",
]  # fmt: skip

#: What a per-layer-dataflow array minimises when it picks a layer's dataflow: cycles (then energy), or energy.
Prefer = Literal["cycles", "energy_mj"]


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
    fused_cycles: int = 0  # GEMMs: cycles the fused nonlinear operators add after the GEMM ends
    bytes_read: int = 0  # DRAM bytes
    bytes_written: int = 0
    energy_mj: float = 0.0
    unit: str = ""  # vector operators: "lanes"/"own"; GEMMs: "attention", a further engine's name, or "" (the array)
    fused_into: str = ""  # vector operators fused to a GEMM: its name
    busy_cycles: int = 0  # vector operators: cycles their unit works (hidden behind the GEMM when fused)
    abits_low: int = 0  # token-split GEMMs (sim/patchwise.py): bits of the low token group, else 0
    token_fraction: float = 0.0  # token-split GEMMs: fraction of rows at ``abits``
    dataflow: str = ""  # GEMMs: the dataflow the layer ran in (its own on a per-layer-dataflow array)

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k * self.count

    def to_json(self) -> dict[str, Any]:
        """The layer's row; token-split GEMMs add ``abits_low`` and ``token_fraction``."""
        row = {name: getattr(self, name) for name in _LAYER_COLUMNS}
        if self.abits_low:
            row.update(abits_low=self.abits_low, token_fraction=self.token_fraction)
        return row


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
    energy_mj: float = 0.0
    fold_pipelining: bool = False

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
            "resources": {key: int(getattr(self.resources, key)) for key in RESOURCE_NAMES},
            "bytes_read": int(self.bytes_read),
            "bytes_written": int(self.bytes_written),
            "energy_mj": float(self.energy_mj),
            "fold_pipelining": bool(self.fold_pipelining),
            "layers": [layer.to_json() for layer in self.layers],
        }


_LAYER_COLUMNS = [
    "name", "kind", "m", "n", "k", "wbits", "abits", "compute_cycles", "stall_cycles", "cycles",
    "fused_cycles", "bytes_read", "bytes_written", "energy_mj", "unit", "fused_into", "busy_cycles", "dataflow",
]  # fmt: skip


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


INT64_MAX = 2**63 - 1
"""The kernels count cycles and bytes in int64; a layer whose counts could pass this is refused, never wrapped."""

MAX_EVENT_FOLDS = 200_000_000
"""Most array folds one call may step through with the memory model: ``kernels._gemm_cycles`` walks fold by
fold (measured 14-15 ns a fold on this project's 2-core machine under load, so about 3 s here) and cannot be
interrupted by Ctrl-C. Past this the call is refused up front with the reason; ``ideal_memory`` takes the closed
form, O(1) per GEMM, and has no such limit."""


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _check_gemm_size(gemm: Gemm, lanes: int, wbits: int, abits: int, target: Target, ideal_memory: bool) -> int:
    """Refuse (InputError) a GEMM whose cycle or byte counts could overflow the kernels' int64 arithmetic, on
    exact Python integers and an upper bound of the memory model's stalls; returns the most folds it can take.

    Bound: every fold loads at most a whole A and B tile and writes or re-reads at most a whole 32-bit partial-sum
    tile, each transfer costs ⌈bytes / bytes per cycle⌉ cycles, and transfers and folds never take longer than
    when run one after another.
    """
    acc = target.accelerator
    rows, cols = acc.rows, acc.cols
    m, n, k, count = gemm.m, gemm.n, gemm.k, gemm.count
    where = f"GEMM {gemm.name!r} ({m}×{n}×{k}" + (f", {count} times" if count > 1 else "") + ")"
    # with ideal memory every lane is used; the memory model may use as few as one (``kernels._usable_lanes``),
    # which gives the most folds, while the widest tile (all lanes) gives the most bytes per fold
    used = lanes if ideal_memory else 1
    if acc.dataflow == "os":
        folds = _ceil(m, rows) * _ceil(n, cols * used)
        fold = k + rows + cols - 2
        tiles = (rows * k, k * cols * lanes, rows * cols * lanes)
    elif acc.dataflow == "ws":
        folds = _ceil(n, cols * used) * _ceil(k, rows)
        fold = 2 * rows + cols + m - 2
        tiles = (m * rows, rows * cols * lanes, m * cols * lanes)
    else:
        folds = _ceil(m, cols * used) * _ceil(k, rows)
        fold = 2 * rows + cols + n - 2
        tiles = (rows * cols * lanes, rows * n, cols * lanes * n)
    folds *= count
    compute = folds * fold
    if compute > INT64_MAX:
        raise InputError(
            f"{where}: {float(compute):.3g} compute cycles on a {rows}×{cols} array, beyond the simulator's 64-bit "
            f"cycle counters (at most {INT64_MAX:.3g}); split the GEMM"
        )
    if ideal_memory:
        return 0
    bytes_per_cycle = float(target.bytes_per_cycle)
    if not (bytes_per_cycle > 0 and bytes_per_cycle < float("inf")):
        raise InputError(f"target {target.name!r}: {bytes_per_cycle!r} DRAM bytes per cycle; must be finite and > 0")
    a_tile, b_tile, out_tile = tiles
    fold_bytes = (a_tile * abits + b_tile * wbits) // 8 + 2 + 2 * 4 * out_tile
    total_bytes = folds * fold_bytes + _ceil(m * k * abits, 8) + _ceil(k * n * wbits, 8)
    stall_bound = total_bytes / bytes_per_cycle + 4 * folds
    if compute + stall_bound > INT64_MAX or max(m * k, k * n, m * n) * 32 > INT64_MAX:
        raise InputError(
            f"{where}: moving up to {float(total_bytes):.3g} bytes at {bytes_per_cycle:.3g} bytes per cycle could "
            f"take {compute + stall_bound:.3g} cycles, beyond the simulator's 64-bit cycle counters (at most "
            f"{INT64_MAX:.3g}); check the target's bandwidth_gbps and clock_mhz, or use --ideal-memory"
        )
    return folds


def _gemm_costs(
    gemms: Iterable[Gemm],
    plan: Mapping[str, Bits],
    target: Target,
    ideal_memory: bool,
    fusion: _Fusion,
    b_resident: frozenset[str] = frozenset(),
) -> dict[tuple[str, Bits], list[int]]:
    """(compute, total, bytes read, bytes written, fused tail, energy mJ) per (GEMM name, bits); each distinct
    shape simulated once. GEMMs named in ``b_resident`` find B on chip when it fits its buffer whole. On a target
    with an attention engine the attention matmuls are costed there (``_attention_costs``)."""
    acc = target.accelerator
    engine_costs: dict[tuple[str, Bits], list] = {}
    if acc.attention is not None or acc.engines:
        by_unit: dict[str, list[Gemm]] = {}
        for gemm in gemms:
            by_unit.setdefault(acc.unit_of(gemm.kind), []).append(gemm)
        gemms = by_unit.pop("", [])
        if "attention" in by_unit:
            engine_costs = _attention_costs(by_unit.pop("attention"), plan, target, ideal_memory, fusion)
        for engine in acc.engines:  # further GEMM arrays: the same rules on their own rows x cols
            if engine.name in by_unit:
                on_engine = by_unit[engine.name]
                engine_costs.update(
                    _gemm_costs(on_engine, plan, target.on_engine(engine), ideal_memory, fusion, b_resident)
                )
    keys: dict[tuple[int, ...], int] = {}
    wanted: list[tuple[str, Bits, tuple[int, ...]]] = []
    lanes_of: dict[Bits, int] = {}
    event_folds = 0
    for gemm in gemms:
        if gemm.m <= 0 or gemm.n <= 0 or gemm.k <= 0 or gemm.count <= 0:
            _check_gemm(gemm)
        pair = plan[gemm.name]
        wbits, abits = pair
        lanes = lanes_of.get(pair)
        if lanes is None:
            lanes = lanes_of[pair] = macs_per_pe(acc.pe, wbits, abits)
        resident = int(gemm.name in b_resident)
        a_bytes_bits, b_bytes_bits = _stored_bits(target, wbits, abits)
        key = (
            lanes, gemm.m, gemm.n, gemm.k, gemm.count, a_bytes_bits, b_bytes_bits, a_bytes_bits, resident,
            fusion.chain_id[gemm.name], wbits, abits,
        )  # fmt: skip
        if key not in keys:
            event_folds += _check_gemm_size(gemm, lanes, wbits, abits, target, ideal_memory)
            if event_folds > MAX_EVENT_FOLDS:
                raise InputError(
                    f"GEMM {gemm.name!r} ({gemm.m}×{gemm.n}×{gemm.k}): the memory model steps through every fold of "
                    f"the {acc.rows}×{acc.cols} array, {event_folds:.3g} folds in all here, more than the "
                    f"{MAX_EVENT_FOLDS:.0e} one call may take (minutes, not interruptible); use --ideal-memory "
                    "(closed form), a bigger array or a smaller GEMM"
                )
        keys.setdefault(key, len(keys))
        wanted.append((gemm.name, (wbits, abits), key))
    if not keys:
        return engine_costs
    table = np.array(list(keys), dtype=np.int64).reshape(len(keys), 12)
    buffers = acc.buffers
    dataflow = DATAFLOW_CODES[acc.dataflow]
    rows = kernels._gemm_cycles_many(
        dataflow,
        acc.rows,
        acc.cols,
        table[:, :9],
        buffers.ifmap_bytes,
        buffers.filter_bytes,
        buffers.ofmap_bytes,
        float(target.bytes_per_cycle),
        bool(ideal_memory),
        bool(acc.fold_pipelining),
    )
    chain_ids = table[:, 9]
    ptr = fusion.chain_ptr
    counts = ptr[chain_ids + 1] - ptr[chain_ids]
    stage_index = np.concatenate([np.arange(ptr[c], ptr[c + 1]) for c in chain_ids]) if counts.sum() else []
    stage_ptr = np.zeros(len(keys) + 1, dtype=np.int64)
    stage_ptr[1:] = np.cumsum(counts)
    shapes = np.empty((len(keys), 6), dtype=np.int64)
    shapes[:, :5] = table[:, :5]
    shapes[:, 5] = fusion.chain_row_wise[chain_ids]
    stage_index = np.asarray(stage_index, dtype=np.int64)
    tails = kernels._fused_tails(
        dataflow,
        acc.rows,
        acc.cols,
        0 if ideal_memory else buffers.ofmap_bytes,
        shapes,
        rows[:, 1].copy(),
        stage_ptr,
        fusion.stage_elements[stage_index],
        fusion.stage_factor[stage_index],
        fusion.stage_depth[stage_index],
    )
    extra = tails + fusion.chain_serial[chain_ids]
    result = np.concatenate([rows, extra[:, None]], axis=1).tolist()
    model = energy_model(target)
    requant = acc.nonlinear.configured
    for key, index in keys.items():
        lanes, m, n, k, count = key[:5]
        wbits, abits = key[10:]
        row = result[index]
        row.append(
            _shape_energy_mj(
                model, acc.dataflow, acc.rows, acc.cols, m, n, k, count, (wbits, abits), row[2] + row[3], requant
            )
        )
    costs = {(name, pair): result[keys[key]] for name, pair, key in wanted}
    costs.update(engine_costs)
    return costs


def _stored_bits(target: Target, wbits: int, abits: int) -> tuple[int, int]:
    """(activation, weight) bits an operand word takes in DRAM and on chip: the simulated bits, or on an ``int8``
    PE that stands for a wider fixed-point multiplier (``accelerator.multiplier_bits``) that multiplier's widths,
    which is what such a design stores and moves (e.g. Edge-MoE's ap_fixed<32> activations, ap_fixed<16> weights).
    """
    bits = target.accelerator.multiplier_bits
    return (abits, wbits) if bits is None else (bits[1], bits[0])


def _attention_costs(
    gemms: Sequence[Gemm], plan: Mapping[str, Bits], target: Target, ideal_memory: bool, fusion: _Fusion
) -> dict[tuple[str, Bits], list]:
    """``_gemm_costs``' rows for attention matmuls on the target's attention engine (sim/attention.py): loop
    iterations plus the engine's pipeline depth, at least the node's DRAM traffic time (``attention_bytes`` at
    the engine's stream rate), then the fused chain's tail over ``count · ⌈M/queries⌉`` row blocks."""
    acc = target.accelerator
    engine = acc.attention
    assert engine is not None
    model = energy_model(target)
    bytes_per_cycle = float(target.bytes_per_cycle)
    if engine.port_bytes_per_cycle is not None:
        bytes_per_cycle = min(bytes_per_cycle, engine.port_bytes_per_cycle)
    requant = acc.nonlinear.configured
    ptr = fusion.chain_ptr
    done: dict[tuple, list] = {}
    costs: dict[tuple[str, Bits], list] = {}
    for gemm in gemms:
        if gemm.m <= 0 or gemm.n <= 0 or gemm.k <= 0 or gemm.count <= 0:
            _check_gemm(gemm)
        pair = plan[gemm.name]
        wbits, abits = pair
        chain = fusion.chain_id[gemm.name]
        key = (gemm.kind, gemm.m, gemm.n, gemm.k, gemm.count, wbits, abits, chain)
        if key not in done:
            m, n, k, count = gemm.m, gemm.n, gemm.k, gemm.count
            compute = engine_cycles(gemm.kind, m, n, k, count, engine)
            a_bits, b_bits = engine.multiplier_bits[::-1] if engine.multiplier_bits else _stored_bits(target, *pair)
            read, written = attention_bytes(gemm.kind, m, n, k, count, a_bits, b_bits, engine)
            moved = 0 if ideal_memory else int(kernels._transfer_cycles(read + written, bytes_per_cycle))
            total = max(compute, moved)
            if total > INT64_MAX:
                raise InputError(
                    f"GEMM {gemm.name!r} ({m}×{n}×{k}, {count} times): {float(total):.3g} cycles on the attention "
                    f"engine, beyond the simulator's 64-bit cycle counters (at most {INT64_MAX:.3g})"
                )
            tail = int(fusion.chain_serial[chain])
            if ptr[chain + 1] > ptr[chain]:
                chunks = count * _ceil(m, engine.queries)
                tail += int(
                    kernels._chain_tail(
                        total, chunks, ptr[chain], ptr[chain + 1], fusion.stage_elements, fusion.stage_factor,
                        fusion.stage_depth,
                    )
                )  # fmt: skip
            energy = _shape_energy_mj(
                model, "os", engine.queries, engine.dims, m, n, k, count, pair, read + written, requant
            )
            done[key] = [compute, total, read, written, tail, energy]
        costs[(gemm.name, pair)] = list(done[key])
    return costs


def _dataflow_costs(
    gemms: Sequence[Gemm],
    plan: Mapping[str, Bits],
    target: Target,
    ideal_memory: bool,
    fusion: _Fusion,
    layer_dataflows: Mapping[str, str] | None,
    prefer: Prefer,
) -> tuple[dict[tuple[str, Bits], list], dict[str, str]]:
    """``_gemm_costs`` and each GEMM's dataflow: the array's own, or on a per-layer-dataflow array the one
    ``layer_dataflows`` names, else the best by ``prefer`` (ties: the order of ``switchable_dataflows``)."""
    acc = target.accelerator
    names = {gemm.name for gemm in gemms}
    fixed = dict(layer_dataflows or {})
    for name, dataflow in fixed.items():
        if name not in names:
            raise InputError(f"layer dataflows name {name!r}, which is not a GEMM of the workload")
        if dataflow not in acc.dataflows:
            raise InputError(
                f"layer {name!r}: dataflow {dataflow!r} is not one the array of target {target.name!r} runs "
                f"({', '.join(acc.dataflows)})"
            )
    if not acc.per_layer_dataflow:
        return _gemm_costs(gemms, plan, target, ideal_memory, fusion), _engine_dataflows(
            gemms, target, {gemm.name: acc.dataflow for gemm in gemms}
        )
    by_dataflow = {
        dataflow: _gemm_costs(
            gemms,
            plan,
            dataclasses.replace(
                target, accelerator=dataclasses.replace(acc, dataflow=dataflow, switchable_dataflows=())
            ),
            ideal_memory,
            fusion,
        )
        for dataflow in acc.dataflows
    }
    costs: dict[tuple[str, Bits], list] = {}
    chosen: dict[str, str] = {}
    for gemm in gemms:
        key = (gemm.name, plan[gemm.name])
        if gemm.name in fixed:
            best = fixed[gemm.name]
        else:

            def rank(dataflow: str, key: tuple[str, Bits] = key) -> tuple[float, float]:
                _, total, _, _, tail, energy = by_dataflow[dataflow][key]
                return (total + tail, energy) if prefer == "cycles" else (energy, total + tail)

            best = min(acc.dataflows, key=rank)
        chosen[gemm.name] = best
        costs[key] = by_dataflow[best][key]
    return costs, _engine_dataflows(gemms, target, chosen)


def _engine_dataflows(gemms: Sequence[Gemm], target: Target, chosen: dict[str, str]) -> dict[str, str]:
    """``chosen`` with the attention matmuls on an attention engine marked ``"os"``: the engine keeps each block
    of outputs in place while keys (q·kᵀ) or values (attn·v) stream past (sim/attention.py)."""
    acc = target.accelerator
    chosen.update((gemm.name, "os") for gemm in gemms if acc.unit_of(gemm.kind) == "attention")
    return chosen


@dataclass(frozen=True)
class _Fusion:
    """Which vector operators fuse to which GEMM, and each GEMM's chain of fused stages (bit-independent).

    Chains are deduplicated: ``chain_id[gemm]`` indexes ``chain_ptr`` (stage ranges), ``chain_row_wise`` and
    ``chain_serial`` (cycles added after the GEMM without overlap: an unfused implicit requantization).
    """

    fused_into: dict[str, str]
    standalone: dict[str, int]
    units: dict[str, str]
    chain_id: dict[str, int]
    chain_ptr: np.ndarray
    chain_row_wise: np.ndarray
    chain_serial: np.ndarray
    stage_elements: np.ndarray
    stage_factor: np.ndarray
    stage_depth: np.ndarray


_FUSION_CACHE: dict[tuple, tuple[Workload, _Fusion]] = {}


def _fusion(workload: Workload, target: Target) -> _Fusion:
    """The fusion plan of ``workload`` on ``target``'s units, cached per workload object and unit set."""
    acc = target.accelerator
    key = (id(workload), acc.nonlinear, acc.vector_lanes)
    cached = _FUSION_CACHE.get(key)
    if cached is not None and cached[0] is workload:
        return cached[1]
    fusion = _build_fusion(workload, target)
    if len(_FUSION_CACHE) >= 64:
        _FUSION_CACHE.clear()
    _FUSION_CACHE[key] = (workload, fusion)
    return fusion


def _unit_cycles_per_element(op_kind: str, row: int, target: Target) -> tuple[str, float, int]:
    """(placement, cycles per element, pipeline depth) of one operator kind on the target's units."""
    nonlinear = target.accelerator.nonlinear
    unit = nonlinear.unit(op_kind)
    if unit.placement == "own":
        passes = 2 if (unit.row_wise and row > unit.row_buffer_elements) else 1
        return "own", passes / unit.elements_per_cycle, unit.pipeline_depth
    return "lanes", VECTOR_OPS_PER_ELEMENT[op_kind] / target.accelerator.vector_lanes, nonlinear.lanes_pipeline_depth


def _standalone_cycles(elements: int, per_element: float, depth: int) -> int:
    return int(np.ceil(elements * per_element - 1e-9)) + depth


def _build_fusion(workload: Workload, target: Target) -> _Fusion:
    nonlinear = target.accelerator.nonlinear
    ops = workload.ops
    graph = getattr(workload, "graph", None)  # duck-typed workloads without a graph chain in execution order
    fused_into: dict[str, str] = {}
    standalone: dict[str, int] = {}
    units: dict[str, str] = {}
    for op in ops:
        if isinstance(op, VectorOp):
            if op.kind not in VECTOR_OPS_PER_ELEMENT:
                raise InputError(f"vector operator {op.name!r} has unknown kind {op.kind!r}")
            if op.elements <= 0:
                raise InputError(f"vector operator {op.name!r} has elements={op.elements}; must be > 0")
            if op.elements * VECTOR_OPS_PER_ELEMENT[op.kind] > INT64_MAX:
                raise InputError(
                    f"vector operator {op.name!r}: {op.elements:.3g} elements, beyond the simulator's 64-bit counters"
                )
            placement, per_element, depth = _unit_cycles_per_element(op.kind, op.row, target)
            standalone[op.name] = _standalone_cycles(op.elements, per_element, depth)
            units[op.name] = placement
    chains: dict[tuple, int] = {}
    chain_id: dict[str, int] = {}
    stages: list[list[tuple[int, float, int]]] = []
    row_wise: list[int] = []
    serial: list[int] = []
    for index, op in enumerate(ops):
        if not isinstance(op, Gemm):
            continue
        outputs = op.m * op.n * op.count
        lane_stage: list[tuple[int, float]] = []
        own_stages: list[tuple[int, int, float, int]] = []  # (position, elements, factor, depth)
        wide = False
        extra = 0
        position = 0
        if nonlinear.configured:
            placement, per_element, depth = _unit_cycles_per_element("requant", 0, target)
            if not nonlinear.unit("requant").fused:
                extra += _standalone_cycles(outputs, per_element, depth)
            elif placement == "lanes":
                lane_stage.append((outputs, per_element))
            else:
                own_stages.append((position, outputs, per_element, depth))
            position += 1
        previous = op.name
        for nxt in ops[index + 1 :]:
            if not isinstance(nxt, VectorOp) or not nonlinear.unit(nxt.kind).fused:
                break
            if graph is not None and previous not in graph.pred[nxt.name]:
                break
            fused_into[nxt.name] = op.name
            placement, per_element, depth = _unit_cycles_per_element(nxt.kind, nxt.row, target)
            wide = wide or nxt.kind in ROW_WISE_KINDS
            if placement == "lanes":
                lane_stage.append((nxt.elements, per_element))
            else:
                own_stages.append((position, nxt.elements, per_element, depth))
            position += 1
            previous = nxt.name
        chain: list[tuple[int, float, int]] = []
        if lane_stage:  # the lanes are one shared stage: their work per element adds up
            elements = max(e for e, _ in lane_stage)
            factor = sum(e * f for e, f in lane_stage) / elements
            chain.append((elements, factor, nonlinear.lanes_pipeline_depth))
        chain.extend((e, f, d) for _, e, f, d in sorted(own_stages))
        signature = (tuple(chain), wide, extra)
        if signature not in chains:
            chains[signature] = len(stages)
            stages.append(chain)
            row_wise.append(int(wide))
            serial.append(extra)
        chain_id[op.name] = chains[signature]
    if not stages:
        stages.append([])
        row_wise.append(0)
        serial.append(0)
    ptr = np.zeros(len(stages) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(chain) for chain in stages])
    flat = [stage for chain in stages for stage in chain]
    for elements, _, _ in flat:
        if elements > INT64_MAX:  # an implicit requantization of a huge GEMM's outputs; refused before int64 arrays
            raise InputError(
                f"workload {workload.name!r}: a fused chain over {float(elements):.3g} elements, beyond the "
                f"simulator's 64-bit counters (at most {INT64_MAX:.3g}); split the GEMM"
            )
    return _Fusion(
        fused_into=fused_into,
        standalone=standalone,
        units=units,
        chain_id=chain_id,
        chain_ptr=ptr,
        chain_row_wise=np.array(row_wise, dtype=np.int64),
        chain_serial=np.array(serial, dtype=np.int64),
        stage_elements=np.array([e for e, _, _ in flat], dtype=np.int64),
        stage_factor=np.array([f for _, f, _ in flat], dtype=np.float64),
        stage_depth=np.array([d for _, _, d in flat], dtype=np.int64),
    )


def vector_cycles(workload: Workload, target: Target) -> int:
    """Cycles of the vector operators of ``workload`` that are not fused to a GEMM (independent of bits).

    Fused operators' cycles are in their GEMM's ``cycles`` (``cost_table``'s ``fused_cycles``), so a plan's
    total is ``vector_cycles`` + Σ of its GEMM rows.
    """
    fusion = _fusion(workload, target)
    return sum(c for name, c in fusion.standalone.items() if name not in fusion.fused_into)


def _vector_energy_pj(op: VectorOp, lane_op_pj: float) -> float:
    return op.elements * VECTOR_OPS_PER_ELEMENT[op.kind] * lane_op_pj


def vector_energy_mj(workload: Workload, target: Target) -> float:
    """Dynamic energy (mJ) of all vector operators of ``workload`` (independent of bits)."""
    lane_op_pj = energy_model(target).lane_op_pj
    return sum(_vector_energy_pj(op, lane_op_pj) for op in workload.vector_ops) / PJ_PER_MJ


def _shape_energy_mj(
    model: Any, dataflow: str, rows: int, cols: int, m: int, n: int, k: int, count: int, bits: Bits, dram: int,
    requant: bool,
) -> float:  # fmt: skip
    """Energy (mJ) of one GEMM shape at ``bits`` with ``dram`` bytes of DRAM traffic."""
    pj = gemm_energy_pj(model, dataflow, rows, cols, m, n, k, count, bits[0], bits[1], dram)
    if requant:  # the implicit requantization of every GEMM output
        pj += m * n * count * VECTOR_OPS_PER_ELEMENT["requant"] * model.lane_op_pj
    return pj / PJ_PER_MJ


def simulate(
    workload: Workload,
    target: Target,
    bits: Bits | Mapping[str, Bits] = (8, 8),
    *,
    rows: int | None = None,
    cols: int | None = None,
    dataflow: str | None = None,
    ideal_memory: bool = False,
    layer_dataflows: Mapping[str, str] | None = None,
    prefer: Prefer = "cycles",
    token_splits: Mapping[str, TokenSplit] | None = None,
) -> SimResult:
    """Simulate ``workload`` on ``target`` at ``bits`` (one (wbits, abits) pair or a per-GEMM mapping).

    ``rows``/``cols``/``dataflow`` override the target's array (``dataflow="per-layer"``: an array that switches
    dataflow per layer). With ``ideal_memory`` (infinite bandwidth, operands on chip) every layer's stall cycles
    are 0. On a per-layer-dataflow array, ``layer_dataflows`` (GEMM name -> dataflow) fixes layers' dataflows;
    the other layers take the one with the fewest cycles (``prefer="energy_mj"``: the least energy).
    ``token_splits``: patch-wise GEMMs (sim/patchwise.py), by name: the low token group of each (its ``abits``
    stay the high group's); the target must support them. A split GEMM runs in the array's own ``dataflow``.
    """
    target = with_array(target, rows, cols, dataflow)
    plan = resolve_bits(workload, target, bits)
    splits = resolve_token_splits(workload, target, plan, token_splits or {})
    fusion = _fusion(workload, target)
    plain = [g for g in workload.gemms if g.name not in splits]
    home = target.accelerator.dataflow
    for name in splits:
        if (layer_dataflows or {}).get(name, home) != home:
            raise InputError(f"layer {name!r}: a token-split GEMM runs in the array's own dataflow {home!r}")
    fixed = {k: v for k, v in (layer_dataflows or {}).items() if k not in splits}
    costs, chosen = _dataflow_costs(plain, plan, target, ideal_memory, fusion, fixed or None, prefer)
    costs.update(_split_costs(workload.gemms, plan, splits, target, ideal_memory, fusion))
    chosen.update(dict.fromkeys(splits, home))
    lane_op_pj = energy_model(target).lane_op_pj
    layers = []
    bytes_read = bytes_written = 0
    for op in workload.ops:
        if isinstance(op, Gemm):
            pair = plan[op.name]
            compute, total, read, written, tail, energy = costs[(op.name, pair)]
            bytes_read += read
            bytes_written += written
            split = splits.get(op.name)
            layers.append(
                LayerResult(
                    op.name, op.kind, op.m, op.n, op.k, pair[0], pair[1], compute, total - compute, total + tail,
                    op.count, tail, read, written, energy,
                    unit=target.accelerator.unit_of(op.kind),
                    abits_low=0 if split is None else split.abits_low,
                    token_fraction=0.0 if split is None else split.fraction,
                    dataflow=chosen[op.name],
                )
            )  # fmt: skip
        elif isinstance(op, VectorOp):
            busy = fusion.standalone[op.name]
            owner = fusion.fused_into.get(op.name, "")
            c = 0 if owner else busy
            energy = _vector_energy_pj(op, lane_op_pj) / PJ_PER_MJ
            layers.append(
                LayerResult(
                    op.name, op.kind, 0, 0, 0, 0, 0, c, 0, c, 1, 0, 0, 0, energy, fusion.units[op.name], owner, busy
                )
            )
    cycles = sum(layer.cycles for layer in layers)
    wbits_used = max((w for w, _ in plan.values()), default=None)
    abits_used = max((a for _, a in plan.values()), default=None)
    resources = _resources(target, wbits_used, abits_used)
    return SimResult(
        target=target.name,
        model=workload.name,
        clock_mhz=float(target.clock_mhz),
        rows=target.accelerator.rows,
        cols=target.accelerator.cols,
        dataflow=PER_LAYER if target.accelerator.per_layer_dataflow else target.accelerator.dataflow,
        pe=target.accelerator.pe,
        ideal_memory=bool(ideal_memory),
        cycles=cycles,
        latency_ms=cycles / (target.clock_mhz * 1e3),
        fits=bool(resources.fits),
        resources=resources,
        layers=tuple(layers),
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        energy_mj=sum(layer.energy_mj for layer in layers),
        fold_pipelining=bool(target.accelerator.fold_pipelining),
    )


@functools.lru_cache(maxsize=256)
def _resources(target: Target, weight_bits: int | None, act_bits: int | None) -> Resources:
    """``estimate_resources`` (pure in its arguments, so cached: sweeps and the ILP simulate one target often)."""
    from sim.resources import estimate_resources

    return estimate_resources(target, weight_bits, act_bits)


def cost_table(
    workload: Workload,
    target: Target,
    bit_pairs: Iterable[Bits],
    *,
    ideal_memory: bool = False,
    prefer: Prefer = "cycles",
) -> pd.DataFrame:
    """One row per (GEMM, wbits, abits): name, kind, wbits, abits, m, n, k, count, macs, weight_params,
    compute_cycles, stall_cycles, fused_cycles, cycles, bytes_read, bytes_written, energy_mj, dataflow.
    Each distinct (shape, bits) is simulated once. On a per-layer-dataflow array each row is the GEMM at those
    bits in its best dataflow (fewest cycles, then least energy; ``prefer="energy_mj"``: least energy first).

    ``cycles`` = compute + stall + fused (what the GEMM's fused nonlinear operators add after it). Every pair
    must be supported by the target (else InputError). Unfused vector operators are not in this table: add
    ``vector_cycles(workload, target)`` (and ``vector_energy_mj``); then any plan's rows sum to ``simulate``'s
    cycles and energy.
    """
    pairs = [_pair(p, "cost table") for p in bit_pairs]
    gemms = workload.gemms
    fusion = _fusion(workload, target)
    plan_rows = []
    for pair in dict.fromkeys(pairs):
        plan = resolve_bits(workload, target, pair)
        costs, chosen = _dataflow_costs(gemms, plan, target, ideal_memory, fusion, None, prefer)
        for gemm in gemms:
            compute, total, read, written, tail, energy = costs[(gemm.name, pair)]
            plan_rows.append(
                (
                    gemm.name, gemm.kind, pair[0], pair[1], gemm.m, gemm.n, gemm.k, gemm.count, gemm.macs,
                    gemm.weight_params, compute, total - compute, tail, total + tail, read, written, energy,
                    chosen[gemm.name],
                )
            )  # fmt: skip
    return pd.DataFrame(plan_rows, columns=COST_COLUMNS)


def resolve_token_splits(
    workload: Workload, target: Target, plan: Mapping[str, Bits], splits: Mapping[str, TokenSplit]
) -> dict[str, TokenSplit]:
    """The token splits checked: the target supports patch-wise bits and the low bits, each named GEMM exists
    and its low bits are below its high ``abits``."""
    if not splits:
        return {}
    first = next(iter(splits))
    if target.accelerator.patchwise is None:
        raise InputError(
            f"target {target.name!r} has no patch-wise support (no [accelerator.patchwise] table), but patch-wise "
            f"bits were asked for (layer {first!r})"
        )
    known = {g.name: g for g in workload.gemms}
    out = {}
    for name, split in splits.items():
        if name not in known:
            raise InputError(f"token split names {name!r}, which is not a GEMM of workload {workload.name!r}")
        unit = target.accelerator.unit_of(known[name].kind)
        if unit == "attention":
            raise InputError(
                f"layer {name!r} runs on the attention engine of target {target.name!r}, which has no patch-wise bits"
            )
        if unit:
            raise InputError(
                f"layer {name!r} runs on engine {unit!r} of target {target.name!r}, which has no patch-wise bits"
            )
        if not isinstance(split, TokenSplit):
            raise InputError(f"token split of layer {name!r}: expected a sim.patchwise.TokenSplit, got {split!r}")
        abits = plan[name][1]
        if split.abits_low not in target.accelerator.act_bits:
            raise InputError(
                f"layer {name!r}: abits_low={split.abits_low} not supported by target {target.name!r} "
                f"(activation bits {list(target.accelerator.act_bits)})"
            )
        if split.abits_low >= abits:
            raise InputError(f"layer {name!r}: abits_low={split.abits_low} must be below abits={abits}")
        out[name] = split
    return out


def _split_costs(
    gemms: Iterable[Gemm],
    plan: Mapping[str, Bits],
    splits: Mapping[str, TokenSplit],
    target: Target,
    ideal_memory: bool,
    fusion: _Fusion,
) -> dict[tuple[str, Bits], list[int]]:
    """``_gemm_costs``' rows for token-split GEMMs: each runs as its high-bit and low-bit row groups back to back
    (``sim.patchwise.costed_rows``), plus the reorder (on the compute cycles) when the design sorts tokens.
    Cycles, bytes and energy add; the fused tail is the last group's (assumption: its operators finish last)."""
    if not splits:
        return {}
    acc = target.accelerator
    patchwise = acc.patchwise
    assert patchwise is not None
    parts: list[Gemm] = []
    part_plan: dict[str, Bits] = {}
    chain_id = dict(fusion.chain_id)
    resident: set[str] = set()
    owners: dict[str, tuple[list[tuple[str, Bits]], int]] = {}
    for gemm in gemms:
        split = splits.get(gemm.name)
        if split is None:
            continue
        wbits, abits = plan[gemm.name]
        high = high_rows(gemm.m, split.fraction)
        lanes = macs_per_pe(acc.pe, wbits, abits)
        at_high, at_low = costed_rows(acc.dataflow, acc.rows, acc.cols, lanes, gemm.m, high, patchwise.token_sort)
        names = []
        for rows, bits, group in ((at_high, (wbits, abits), "high"), (at_low, (wbits, split.abits_low), "low")):
            if rows == 0:
                continue
            part = dataclasses.replace(gemm, name=f"{gemm.name}#{group}", m=rows)
            parts.append(part)
            part_plan[part.name] = bits
            chain_id[part.name] = fusion.chain_id[gemm.name]
            if names:  # the second group: the weights the first loaded are still on chip if they fit whole
                resident.add(part.name)
            names.append((part.name, bits))
        reorder = patchwise.reorder_cycles_per_token * gemm.m * gemm.count if patchwise.token_sort else 0
        owners[gemm.name] = (names, reorder)
    costs = _gemm_costs(
        parts, part_plan, target, ideal_memory, dataclasses.replace(fusion, chain_id=chain_id), frozenset(resident)
    )
    out: dict[tuple[str, Bits], list[int]] = {}
    for name, (names, reorder) in owners.items():
        rows = [costs[key] for key in names]
        compute = sum(r[0] for r in rows) + reorder
        total = sum(r[1] for r in rows) + reorder
        read, written = sum(r[2] for r in rows), sum(r[3] for r in rows)
        out[(name, plan[name])] = [compute, total, read, written, rows[-1][4], sum(r[5] for r in rows)]
    return out


def token_split_cost_table(
    workload: Workload,
    target: Target,
    choices: Iterable[tuple[int, int, int]],
    fraction: float,
    *,
    layers: Iterable[str] | None = None,
    ideal_memory: bool = False,
) -> pd.DataFrame:
    """``cost_table``'s rows for token-split choices (wbits, abits, abits_low) at ``fraction`` of rows high, for
    ``layers`` (default every GEMM), with two more columns ``abits_low`` and ``token_fraction``. Choices the
    target cannot run (bits, or abits_low not below abits) are left out; a target without patch-wise support
    raises ``InputError``."""
    names = [g.name for g in workload.gemms] if layers is None else list(layers)
    gemms = {g.name: g for g in workload.gemms}
    accel = target.accelerator
    fusion = _fusion(workload, target)
    rows = []
    for wbits, abits, low in dict.fromkeys((int(w), int(a), int(lo)) for w, a, lo in choices):
        if not (target.supports(wbits, abits) and low in accel.act_bits and low < abits):
            continue
        plan = dict.fromkeys(names, (wbits, abits))
        splits = resolve_token_splits(workload, target, plan, dict.fromkeys(names, TokenSplit(low, fraction)))
        costs = _split_costs([gemms[n] for n in names], plan, splits, target, ideal_memory, fusion)
        for name in names:
            gemm = gemms[name]
            compute, total, read, written, tail, energy = costs[(name, (wbits, abits))]
            rows.append(
                (
                    name, gemm.kind, wbits, abits, gemm.m, gemm.n, gemm.k, gemm.count, gemm.macs, gemm.weight_params,
                    compute, total - compute, tail, total + tail, read, written, energy, accel.dataflow, low,
                    float(fraction),
                )
            )  # fmt: skip
    return pd.DataFrame(rows, columns=[*COST_COLUMNS, "abits_low", "token_fraction"])
