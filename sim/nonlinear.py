"""Nonlinear operator units: softmax, GELU, LayerNorm, residual add and requantization as designs build them.

Each operator kind runs either on the **generic vector lanes** (``placement = "lanes"``: ``vector_lanes``
32-bit integer lanes doing one lane operation per cycle, with I-ViT's operation counts per element,
``sim.simulate.VECTOR_OPS_PER_ELEMENT``) or on a **unit of its own** (``placement = "own"``: a pipelined
datapath taking ``elements_per_cycle`` elements per cycle with ``pipeline_depth`` cycles of latency).

Timing of one operator over E elements (rules implemented in sim/kernels.py, twins in tests/naive.py):

- on its own unit: ⌈E · passes / elements_per_cycle⌉ + pipeline_depth cycles; a row-wise operator (softmax,
  LayerNorm) whose rows are longer than the unit's row buffer makes two passes over each row (statistics, then
  normalisation), else one;
- on the lanes: ⌈E · ops per element / lanes⌉ + the lanes' pipeline depth.
- **Fusion**: an operator marked ``fused`` whose input comes from the GEMM executed just before it (or from a
  fused operator of that GEMM) works on the GEMM's output chunks as they drain: output tiles for elementwise
  operators, whole-row blocks for row-wise ones (OS and IS finish rows one outer tile at a time; WS finishes
  rows only with its last fold). Chunks become ready evenly over the GEMM's cycles; each fused operator is a
  pipeline stage (the lanes are one shared stage); only the part that outlasts the GEMM (the tail) is added,
  and it is reported on the GEMM's row as ``fused_cycles``.
- **Requantization**: workloads from ``allocator.workload_from_model`` record no requantization, so a target
  that configures its nonlinear units (``Nonlinear.configured``) requantizes every GEMM's output on the requant
  unit, as the first stage of that GEMM's chain; explicit ``requant`` operators in a workload are priced too.

Resources: an own unit costs the LUT/FF/DSP its target file gives (per unit, from the design it is taken
from, or an assumption); row-wise units hold a double-buffered row of ``row_buffer_elements`` elements of
``row_buffer_bits`` bits in BRAM36 (sim/resources.py).

A target file without an ``[accelerator.nonlinear]`` table keeps the legacy behaviour: everything on the
lanes, unfused, no pipeline depth, no implicit requantization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sim.errors import InputError

__all__ = ["NONLINEAR_KINDS", "ROW_WISE_KINDS", "Nonlinear", "NonlinearUnit", "parse_nonlinear"]

NONLINEAR_KINDS: tuple[str, ...] = ("softmax", "gelu", "layernorm", "add", "requant")
#: Operators that need a whole row (along the GEMM's N) before they can finish it.
ROW_WISE_KINDS: frozenset[str] = frozenset({"softmax", "layernorm"})

Placement = Literal["lanes", "own"]


@dataclass(frozen=True)
class NonlinearUnit:
    """Where one operator kind runs and how fast (cycles, elements per cycle), and what its own unit costs."""

    kind: str
    placement: Placement = "lanes"
    fused: bool = False
    elements_per_cycle: float = 0.0  # own units only
    pipeline_depth: int = 0  # cycles from an element in to its result out (own units)
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    row_buffer_elements: int = 0  # softmax / LayerNorm: longest row held on chip
    row_buffer_bits: int = 32  # bits per buffered element (I-ViT keeps 32-bit intermediates)

    @property
    def row_wise(self) -> bool:
        return self.kind in ROW_WISE_KINDS


@dataclass(frozen=True)
class Nonlinear:
    """The target's nonlinear units, one per kind; ``configured`` is False for the legacy all-lanes default."""

    units: tuple[NonlinearUnit, ...] = tuple(NonlinearUnit(kind) for kind in NONLINEAR_KINDS)
    lanes_pipeline_depth: int = 0
    configured: bool = False

    def unit(self, kind: str) -> NonlinearUnit:
        for unit in self.units:
            if unit.kind == kind:
                return unit
        raise InputError(f"no nonlinear unit for operator kind {kind!r}; expected one of {', '.join(NONLINEAR_KINDS)}")

    @property
    def own_units(self) -> tuple[NonlinearUnit, ...]:
        return tuple(unit for unit in self.units if unit.placement == "own")


_UNIT_KEYS = {
    "placement", "fused", "elements_per_cycle", "pipeline_depth", "lut", "ff", "dsp",
    "row_buffer_elements", "row_buffer_bits", "source",
}  # fmt: skip


def _integer(spec: dict[str, Any], prefix: str, where: str, key: str, default: int, minimum: int = 0) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{where}.{prefix}.{key}: must be an integer >= {minimum}, got {value!r}")
    return value


def parse_nonlinear(table: dict[str, Any], where: str) -> Nonlinear:
    """A ``Nonlinear`` from the raw ``[accelerator.nonlinear]`` TOML table; ``where`` prefixes error messages.

    Layout: ``lanes_pipeline_depth = N`` and one sub-table per operator kind (missing kinds run unfused on the
    lanes), e.g. ``softmax = { placement = "own", elements_per_cycle = 8, pipeline_depth = 30, fused = true,
    lut = 9000, ff = 11000, dsp = 16, row_buffer_elements = 256, source = "..." }``. Every sub-table needs a
    ``source`` (a citation, or ``assumption: ...``), as every number of a target file does.
    """

    def fail(key: str, reason: str) -> InputError:
        return InputError(f"{where}.{key}: {reason}")

    if not isinstance(table, dict):
        raise InputError(f"{where}: expected a table")
    unknown = [key for key in table if key not in (*NONLINEAR_KINDS, "lanes_pipeline_depth", "source")]
    if unknown:
        raise fail(
            unknown[0], f"unknown key; expected lanes_pipeline_depth, source or one of {', '.join(NONLINEAR_KINDS)}"
        )
    lanes_depth = table.get("lanes_pipeline_depth", 0)
    if isinstance(lanes_depth, bool) or not isinstance(lanes_depth, int) or lanes_depth < 0:
        raise fail("lanes_pipeline_depth", f"must be an integer >= 0, got {lanes_depth!r}")
    if "lanes_pipeline_depth" in table and not isinstance(table.get("source"), str):
        raise fail("lanes_pipeline_depth", 'missing source (add a table `source = "..."`)')
    units = []
    for kind in NONLINEAR_KINDS:
        spec = table.get(kind)
        if spec is None:
            units.append(NonlinearUnit(kind))
            continue
        prefix = kind
        if not isinstance(spec, dict):
            raise fail(prefix, 'expected a table like { placement = "own", elements_per_cycle = 8, ... }')
        for key in spec:
            if key not in _UNIT_KEYS:
                raise fail(f"{prefix}.{key}", f"unknown key; expected one of {', '.join(sorted(_UNIT_KEYS))}")
        source = spec.get("source")
        if not isinstance(source, str) or not source.strip():
            raise fail(f"{prefix}.source", 'missing source (a citation or "assumption: ...")')
        placement = spec.get("placement", "lanes")
        if placement not in ("lanes", "own"):
            raise fail(f"{prefix}.placement", f"unknown value {placement!r}; expected lanes or own")
        fused = spec.get("fused", False)
        if not isinstance(fused, bool):
            raise fail(f"{prefix}.fused", f"expected true or false, got {fused!r}")

        own_only = ("elements_per_cycle", "pipeline_depth", "lut", "ff", "dsp", "row_buffer_elements")
        if placement == "lanes":
            extra = [key for key in own_only if key in spec]
            if extra:
                raise fail(f"{prefix}.{extra[0]}", 'only a unit of its own (placement = "own") takes this key')
            units.append(NonlinearUnit(kind, "lanes", fused))
            continue
        rate = spec.get("elements_per_cycle")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0 or rate != rate:
            raise fail(f"{prefix}.elements_per_cycle", f"must be a positive number, got {rate!r}")
        row_elements = _integer(spec, prefix, where, "row_buffer_elements", 0)
        if kind in ROW_WISE_KINDS and row_elements == 0:
            raise fail(f"{prefix}.row_buffer_elements", "a row-wise unit needs its row buffer size (elements)")
        if kind not in ROW_WISE_KINDS and row_elements:
            raise fail(f"{prefix}.row_buffer_elements", f"{kind} is elementwise and holds no rows")
        units.append(
            NonlinearUnit(
                kind,
                "own",
                fused,
                float(rate),
                _integer(spec, prefix, where, "pipeline_depth", 0),
                _integer(spec, prefix, where, "lut", 0),
                _integer(spec, prefix, where, "ff", 0),
                _integer(spec, prefix, where, "dsp", 0),
                row_elements,
                _integer(spec, prefix, where, "row_buffer_bits", 32, 1),
            )
        )
    return Nonlinear(tuple(units), lanes_depth, True)
