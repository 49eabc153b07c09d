"""The sweep file's schema (pydantic, ``sim.schema``): top-level keys, the ``[grid]`` axes and ``[[point]]`` tables.

Described once here; ``load_sweep`` (run.py) reads the file with ``sim.schema.read_toml``, validates it
against ``SweepFile`` and then does what a schema cannot: load each target, check each point's bits against
its target, expand the grid. Bounds of hardware values are the target file's (``sim.target_file``), so a
sweep cannot ask for a design a target file would refuse.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from allocator.sweep.grid import BUDGET_AXES
from sim.plan import Bits
from sim.schema import FileModel, keyed_error
from sim.target import MAX_ARRAY_SIDE
from sim.target_file import (
    MAX_BANDWIDTH_GBPS,
    MAX_CLOCK_MHZ,
    MAX_SRAM_KIB,
    MIN_BANDWIDTH_GBPS,
    MIN_BUFFER_KIB,
    MIN_CLOCK_MHZ,
)

#: A sweep's dataflow values: a fixed dataflow, or "per-layer" (the array switches per layer, sim.target.PER_LAYER).
SweepDataflow = Literal["os", "ws", "is", "per-layer"]

__all__ = ["AXES", "BUDGET_AXES", "OPERAND_BUFFER_AXES", "GridTable", "PointTable", "SweepFile"]

Name = Annotated[str, Field(min_length=1)]
Side = Annotated[int, Field(gt=0, le=MAX_ARRAY_SIDE)]
ClockMhz = Annotated[float, Field(ge=MIN_CLOCK_MHZ, le=MAX_CLOCK_MHZ)]
BandwidthGbps = Annotated[float, Field(ge=MIN_BANDWIDTH_GBPS, le=MAX_BANDWIDTH_GBPS)]
Budget = Annotated[float, Field(gt=0)]
Kib = Annotated[float, Field(ge=MIN_BUFFER_KIB, le=MAX_SRAM_KIB)]  # one operand's buffer, KiB (as in a target file)
Pair = Annotated[list[Bits], Field(min_length=2, max_length=2)]


def _sums_to_one(shares: list[float]) -> list[float]:
    if not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise ValueError(f"[ifmap, filter, ofmap] fractions must sum to 1, got {shares} (sum {sum(shares):g})")
    return shares


Share = Annotated[float, Field(gt=0, le=1)]
Split = Annotated[list[Share], Field(min_length=3, max_length=3), AfterValidator(_sums_to_one)]


def _axis(value: Any) -> Any:
    return Annotated[list[value], Field(min_length=1)]


class GridTable(FileModel):
    """``[grid]``: a list of values per axis; absent axes take the target's own value."""

    target: _axis(Name)
    rows: _axis(Side) | None = None
    cols: _axis(Side) | None = None
    dataflow: _axis(SweepDataflow) | None = None
    clock_mhz: _axis(ClockMhz) | None = None
    bandwidth_gbps: _axis(BandwidthGbps) | None = None
    buffer_split: _axis(Split) | None = None
    bits: _axis(Pair) | None = None
    latency_ms: _axis(Budget) | None = None
    size_mb: _axis(Budget) | None = None
    bops: _axis(Budget) | None = None
    energy_mj: _axis(Budget) | None = None
    ifmap_kib: _axis(Kib) | None = None
    filter_kib: _axis(Kib) | None = None
    ofmap_kib: _axis(Kib) | None = None


class PointTable(FileModel):
    """``[[point]]``: one design, one value per axis, optionally for one ``model`` only."""

    target: Name
    model: Name | None = None
    rows: Side | None = None
    cols: Side | None = None
    dataflow: SweepDataflow | None = None
    clock_mhz: ClockMhz | None = None
    bandwidth_gbps: BandwidthGbps | None = None
    buffer_split: Split | None = None
    bits: Pair | None = None
    latency_ms: Budget | None = None
    size_mb: Budget | None = None
    bops: Budget | None = None
    energy_mj: Budget | None = None
    ifmap_kib: Kib | None = None
    filter_kib: Kib | None = None
    ofmap_kib: Kib | None = None


#: Design axes (keys of ``[grid]``), in file order; budgets only with ``allocate = true``.
AXES: tuple[str, ...] = tuple(GridTable.model_fields)
#: Per-operand buffer sizes (KiB); instead of ``buffer_split``, not with it.
OPERAND_BUFFER_AXES: tuple[str, ...] = ("ifmap_kib", "filter_kib", "ofmap_kib")


class SweepFile(FileModel):
    """A whole sweep file (run.py's docstring describes each key)."""

    models: Annotated[list[Name], Field(min_length=1)]
    name: Name | None = None
    points_per_part: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    allocate: bool = False
    sensitivity: Name | None = None
    choices: Annotated[list[Pair], Field(min_length=1)] | None = None
    grid: GridTable | None = None
    point: list[PointTable] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SweepFile:
        if self.grid is None and not self.point:
            raise keyed_error("grid", "a sweep needs a [grid] table or [[point]] tables")
        if not self.allocate:
            for key in ("sensitivity", "choices"):
                if getattr(self, key) is not None:
                    raise keyed_error(key, "only meaningful with allocate = true")
        tables = [("grid", self.grid)] if self.grid is not None else []
        tables += [(f"point[{i}]", table) for i, table in enumerate(self.point)]
        for where, table in tables:
            if self.allocate and table.bits is not None:
                raise keyed_error(f"{where}.bits", "with allocate = true the ILP picks bits; use choices and budgets")
            for budget in BUDGET_AXES:
                if not self.allocate and getattr(table, budget) is not None:
                    raise keyed_error(f"{where}.{budget}", "budgets need allocate = true")
            operands = [axis for axis in OPERAND_BUFFER_AXES if getattr(table, axis) is not None]
            if operands and table.buffer_split is not None:
                raise keyed_error(f"{where}.{operands[0]}", "give buffer_split or per-operand buffer sizes, not both")
        return self
