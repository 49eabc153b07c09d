"""Design-space sweeps on Dask: a TOML grid (or list) of design points, evaluated in batches, saved as parquet.

A sweep file declares models and either a ``[grid]`` of axes, explicit ``[[point]]`` tables, or both::

    models = ["deit_small_patch16_224"]
    points_per_part = 100            # optional: design points per Dask task and per parquet part file

    [grid]
    target = ["zcu102", "kv260"]     # shipped names or TOML paths (relative to the sweep file)
    rows = [16, 32]                  # array shape; absent axes take the target's own value
    cols = [16, 32]
    dataflow = ["os", "ws"]
    clock_mhz = [200.0, 300.0]
    bandwidth_gbps = [10.0, 19.2]
    buffer_split = [[0.25, 0.5, 0.25]]   # ifmap / filter / ofmap share of the target's total buffer bytes
    # or per-operand sizes instead of a split: ifmap_kib = [64.0, 256.0], filter_kib = [...], ofmap_kib = [...]
    bits = [[8, 8], [4, 8]]          # uniform (wbits, abits) for every layer

A ``[[point]]`` table takes the same keys with one value each (plus ``model``, else every model) and
adds one design; grid and points may be combined, and a design given twice is kept once.

The points are counted, never all built: more than ``MAX_POINTS`` is refused unless ``load_sweep(max_points=None)``
(CLI ``--yes``). Point i is the i-th combination with the first axis slowest and budgets fastest
(``grid.PointGrid``).

With ``allocate = true`` every point gets the minimum-Ω bit plan instead of a uniform simulation; the grid
then has budget axes (``latency_ms``, ``size_mb``, ``bops`` in GBOPs, ``energy_mj``) instead of ``bits``, ``choices``
lists the candidate [wbits, abits] pairs (default: all the target supports) and ``sensitivity`` is
``"proxy"`` (``proxy_sensitivity``, no data needed) or a CSV/parquet table with columns layer, wbits,
abits, sensitivity (e.g. measured Hessian traces), relative to the sweep file, checked value by value
before any work. Points of one design share its problem table; one budget is solved exactly by the Pareto-front
DP (``allocator.ilp.mckp``), several by the ILP (``codesign``).

Each design point is fully resolved against its target before any work (defaults filled in), and its id is
a hash of those parameters, so the same file always yields the same ids. Results are a parquet dataset
(``dataset.Dataset``: parts, a manifest, a lock): a directory of ``part-*.parquet`` files, each one chunk of
points in one row group, written under a temporary name and moved into place with ``os.replace``, so a part is
either whole or absent. A rerun reads the point indices already there and evaluates only the rest: an
interrupted sweep loses no finished part and writes no point twice. A simulation chunk is evaluated at once
(``batch.simulate_columns``: equal point for point to ``simulate_point``). A point the simulator rejects
(``InputError``) is stored with its ``error`` text and counts as done; any other exception stops the sweep
after the other chunks are stored. A complete sweep marks its Pareto front (``pareto``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allocator.sweep.dataset import PARETO, Dataset, read_results
from allocator.sweep.grid import PointGrid, Points, id_text, point_ids
from allocator.sweep.spec import BUDGET_AXES, OPERAND_BUFFER_AXES, SweepFile
from sim.errors import InputError
from sim.schema import read_toml, validate
from sim.target import PER_LAYER, Target
from sim.target_file import load_target
from sim.workload import Workload

__all__ = [
    "DesignPoint",
    "SweepSpec",
    "SweepSummary",
    "allocate_point",
    "configure_target",
    "finished_ids",
    "load_sweep",
    "proxy_sensitivity",
    "read_results",
    "run_sweep",
    "simulate_point",
]


# the ceiling on design points a sweep file may declare without --yes (`load_sweep(max_points=None)`): ten million
# points are about 1 GB of parquet and 20 minutes on a 2-core machine, where a typo in a grid can ask for 10^9
MAX_POINTS = 10_000_000

# evaluate(workload, target configured for the point, point) -> result columns of the point's row
Evaluate = Callable[[Workload, Target, "DesignPoint"], Mapping[str, Any]]


@dataclass(frozen=True)
class DesignPoint:
    """One design: a model on a target with every hardware parameter resolved (no defaults left open).

    ``wbits``/``abits`` are the uniform bits of a simulation point and 0 on allocation points, whose bits
    the ILP chooses among ``choices`` (empty: every pair the target supports) under the budgets
    ``limit_latency_ms`` (ms), ``limit_size_mb`` (1e6 bytes), ``limit_bops`` (1e9 bit operations) and
    ``limit_energy_mj`` (mJ of dynamic energy per inference); an absent
    budget is ``None``. ``sensitivity`` is ``"proxy"`` or the path of a sensitivity table file.
    """

    model: str
    target: str
    rows: int
    cols: int
    dataflow: str
    clock_mhz: float
    bandwidth_gbps: float
    ifmap_bytes: int
    filter_bytes: int
    ofmap_bytes: int
    wbits: int = 8
    abits: int = 8
    allocate: bool = False
    limit_latency_ms: float | None = None
    limit_size_mb: float | None = None
    limit_bops: float | None = None
    limit_energy_mj: float | None = None
    sensitivity: str = ""
    choices: tuple[tuple[int, int], ...] = ()

    @property
    def point_id(self) -> str:
        """Stable 16-hex-digit id: a hash of every parameter, so reruns of a file find the same ids."""
        return point_ids([id_text({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})])[0]

    def to_row(self) -> dict[str, Any]:
        """The point's parameters as a parquet-friendly row (absent budgets as NaN, choices as ``"8/8 4/8"``)."""
        row: dict[str, Any] = {"point_id": self.point_id, **dataclasses.asdict(self)}
        for key in BUDGET_AXES:
            if row[f"limit_{key}"] is None:
                row[f"limit_{key}"] = math.nan
        row["choices"] = " ".join(f"{w}/{a}" for w, a in self.choices)
        return row


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file: its design points (in file order, no duplicates) and how to batch them.

    ``targets`` maps each point's ``target`` to the Target loaded when the file was checked; workers get these
    objects, never the files, so every point sees the validated target even on a remote cluster.
    """

    path: Path
    name: str
    models: tuple[str, ...]
    points: Sequence[DesignPoint]
    targets: Mapping[str, Target]
    allocate: bool
    sensitivity: str
    choices: tuple[tuple[int, int], ...]
    points_per_part: int | None


@dataclass(frozen=True)
class SweepSummary:
    """What one run of a sweep did. ``done`` points were evaluated now, ``skipped`` were already on disk.

    ``pareto`` points of the stored rows are on the Pareto front (``pareto.OBJECTIVES``), found in ``pareto_s`` (s).
    ``wall_s`` (s) is the whole run; of it, ``cluster_s`` started or reached the Dask cluster and
    ``workload_s`` checked the model names and built their workloads (the workers warm up meanwhile).
    """

    points: int
    done: int
    skipped: int
    errors: int
    parts: int
    out: str
    wall_s: float
    workload_s: float
    cluster_s: float
    scheduler: str
    workers: int
    pareto: int = 0
    pareto_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Reading and validating the sweep file


def _fail(path: Path, key: str, reason: str) -> InputError:
    return InputError(f"{path}: {key}: {reason}")


def _resolve_target(path: Path, key: str, name: str) -> Target:
    try:
        return _cached_target(_target_ref(path, name))
    except InputError as exc:
        raise _fail(path, key, str(exc).splitlines()[0]) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise _fail(path, key, f"cannot read target file {exc.filename}") from None


def _cached_target(name_or_path: str) -> Target:
    """``load_target`` once per target file version (a notebook that edits a TOML file sees the edit)."""
    stamp = os.stat(name_or_path).st_mtime_ns if name_or_path.endswith(".toml") else 0
    return _load_target_version(name_or_path, stamp)


@lru_cache(maxsize=64)
def _load_target_version(name_or_path: str, mtime_ns: int) -> Target:
    return load_target(name_or_path)


def _target_ref(path: Path, name: str) -> str:
    """How a point records its target: a shipped name as is, a TOML path resolved against the sweep file."""
    if name.endswith(".toml"):
        candidate = Path(name)
        return str(candidate if candidate.is_absolute() else (path.parent / candidate).resolve())
    return name


def load_sweep(path: str | Path, *, max_points: int | None = MAX_POINTS) -> SweepSpec:
    """Parse and validate a sweep file completely (every target loaded, every value checked) before any work.

    The file's shape is ``allocator.sweep.spec.SweepFile``; this adds what needs other files (targets, the
    sensitivity table). The points are counted, not expanded: more than ``max_points`` (None: no ceiling) is
    refused up front. Raises ``InputError`` ``FILE: dotted.key: reason`` on the first problem found.
    """
    path = Path(path)
    spec = validate(SweepFile, read_toml(path, "sweep"), path)
    allocate = spec.allocate
    sensitivity = spec.sensitivity or ("proxy" if allocate else "")
    if allocate and sensitivity != "proxy":
        sensitivity = _check_sensitivity_table(path, sensitivity)
    choices = tuple((w, a) for w, a in spec.choices or ())
    models = tuple(spec.models)
    context = _Context(path, allocate, sensitivity, choices)

    point_grid = None
    if spec.grid is not None:
        axes: dict[str, list[Any]] = {}
        for axis, values in spec.grid.model_dump(exclude_none=True).items():
            values = [tuple(v) if isinstance(v, list) else v for v in values]
            axes[axis] = list(dict.fromkeys(values))  # a value given twice is one design
        count = len(models) * math.prod(len(values) for values in axes.values())
        _check_count(path, count, max_points)
        point_grid = _build_grid(context, models, axes)
    _check_count(path, len(spec.point), max_points)
    extra: dict[str, DesignPoint] = {}
    for i, table in enumerate(spec.point):
        where = f"point[{i}]"
        combo = {k: tuple(v) if isinstance(v, list) else v for k, v in table.model_dump(exclude_none=True).items()}
        for model in (combo.pop("model"),) if "model" in combo else models:
            point = _resolve_point(context, where, model, combo)
            if point_grid is None or not _grid_holds(point_grid, point):
                extra.setdefault(point.point_id, point)
    points = Points(point_grid, tuple(extra.values()), DesignPoint)
    _check_count(path, len(points), max_points)
    refs = point_grid.targets if point_grid is not None else ()
    return SweepSpec(
        path=path,
        name=spec.name or path.stem,
        models=tuple(dict.fromkeys([*models, *(p.model for p in extra.values())])),
        points=points,
        targets={ref: _cached_target(ref) for ref in dict.fromkeys([*refs, *(p.target for p in extra.values())])},
        allocate=allocate,
        sensitivity=sensitivity,
        choices=choices,
        points_per_part=spec.points_per_part,
    )


def _check_sensitivity_table(path: Path, name: str) -> str:
    """The absolute path of the sweep's sensitivity table, after checking it reads and has the columns."""
    table = Path(name)
    table = table if table.is_absolute() else path.parent / table
    if not table.is_file():
        raise _fail(path, "sensitivity", f"expected 'proxy' or a sensitivity table file; {table} does not exist")
    resolved = str(table.resolve())
    try:
        columns = set(_sensitivity_table(resolved).columns)
    except Exception as exc:  # any reader error is the file's fault
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise _fail(path, "sensitivity", f"cannot read {table}: {reason}") from None  # pandas' text may end in \n
    missing = {"layer", "wbits", "abits", "sensitivity"} - columns
    if missing:
        raise _fail(path, "sensitivity", f"{table} lacks column(s) {', '.join(sorted(missing))}")
    problem = _table_problem(_sensitivity_table(resolved))
    if problem:
        raise _fail(path, "sensitivity", f"{table}: {problem}")
    return resolved


def _check_count(path: Path, count: int, max_points: int | None) -> None:
    if max_points is not None and count > max_points:
        raise InputError(
            f"{path}: {count:,} design points is above the ceiling of {max_points:,}; "
            "pass --yes (load_sweep(max_points=None)) to run it anyway"
        )


@dataclass(frozen=True)
class _Context:
    path: Path
    allocate: bool
    sensitivity: str
    choices: tuple[tuple[int, int], ...]


def _buffer_axes(present: Iterable[str]) -> tuple[str, ...]:
    """Per-operand buffer axes when any is used, else the split (absent axes take the target's own buffers)."""
    present = set(present)
    return OPERAND_BUFFER_AXES if present & set(OPERAND_BUFFER_AXES) else ("buffer_split",)


def _axis_fields(context: _Context, where: str, target: Target, axis: str, value: Any) -> tuple[tuple[str, Any], ...]:
    """The DesignPoint fields one axis value sets on ``target`` (``None``: the target's own setting)."""
    acc = target.accelerator
    buffers = acc.buffers
    if axis == "dataflow" and value is None:
        return (("dataflow", PER_LAYER if acc.per_layer_dataflow else acc.dataflow),)
    if axis in ("rows", "cols", "dataflow"):
        return ((axis, getattr(acc, axis) if value is None else value),)
    if axis == "clock_mhz":
        return (("clock_mhz", float(target.clock_mhz if value is None else value)),)
    if axis == "bandwidth_gbps":
        return (("bandwidth_gbps", float(target.memory.bandwidth_gbps if value is None else value)),)
    if axis == "buffer_split":
        if value is None:
            split = (buffers.ifmap_bytes, buffers.filter_bytes, buffers.ofmap_bytes)
        else:
            total = buffers.ifmap_bytes + buffers.filter_bytes + buffers.ofmap_bytes
            ifmap_bytes, filter_bytes = int(total * value[0]), int(total * value[1])
            split = (ifmap_bytes, filter_bytes, total - ifmap_bytes - filter_bytes)
        return (("ifmap_bytes", split[0]), ("filter_bytes", split[1]), ("ofmap_bytes", split[2]))
    if axis in OPERAND_BUFFER_AXES:
        operand = axis.removesuffix("_kib")
        nbytes = getattr(buffers, f"{operand}_bytes") if value is None else round(value * 1024)
        return ((f"{operand}_bytes", nbytes),)
    if axis == "bits":
        if value is None:
            wbits, abits = (0, 0) if context.allocate else (max(acc.weight_bits), max(acc.act_bits))
        else:
            wbits, abits = value
        for bits, supported, role in ((wbits, acc.weight_bits, "wbits"), (abits, acc.act_bits, "abits")):
            if not context.allocate and bits not in supported:
                raise _fail(
                    context.path, f"{where}.bits", f"{role}={bits} not supported by target {target.name!r} {supported}"
                )
        return (("abits", abits), ("wbits", wbits))
    if axis in BUDGET_AXES:
        return ((f"limit_{axis}", value),)
    raise AssertionError(axis)


def _design_axes(present: Iterable[str]) -> tuple[str, ...]:
    present = tuple(present)
    return ("rows", "cols", "dataflow", "clock_mhz", "bandwidth_gbps", *_buffer_axes(present), "bits", *BUDGET_AXES)


def _check_choices(context: _Context, target: Target) -> None:
    acc = target.accelerator
    for w, a in context.choices:
        if w not in acc.weight_bits or a not in acc.act_bits:
            raise _fail(context.path, "choices", f"[{w}, {a}] not supported by target {target.name!r}")


def _build_grid(context: _Context, models: Sequence[str], axes: Mapping[str, list[Any]]) -> PointGrid:
    """The lazy grid: per target, what every value of every axis resolves to (checked here, once)."""
    path = context.path
    refs = [_target_ref(path, name) for name in axes["target"]]
    loaded = [_resolve_target(path, f"grid.target[{i}]", name) for i, name in enumerate(axes["target"])]
    if len(set(refs)) != len(refs):
        keep = dict.fromkeys(range(len(refs)))
        seen: set[str] = set()
        for i, ref in enumerate(refs):
            if ref in seen:
                keep.pop(i)
            seen.add(ref)
        refs, loaded = [refs[i] for i in keep], [loaded[i] for i in keep]
    for target in loaded:
        _check_choices(context, target)
    file_axes = [(name, tuple(values)) for name, values in axes.items() if name != "target"]
    resolved = {}
    for axis in _design_axes(axes):
        values = axes.get(axis, [None])
        resolved[axis] = tuple(
            tuple(_axis_fields(context, f"grid.{axis}", target, axis, value) for value in values) for target in loaded
        )
    constants = (("allocate", context.allocate), ("sensitivity", context.sensitivity), ("choices", context.choices))
    return PointGrid(
        targets=tuple(refs),
        models=tuple(models),
        axes=tuple(file_axes),
        resolved=resolved,
        constants=constants,
    )


def _grid_holds(grid: PointGrid, point: DesignPoint) -> bool:
    """Whether ``point`` is one of the grid's points (so an explicit point repeating it is kept once)."""
    if point.target not in grid.targets or point.model not in grid.models:
        return False
    t = grid.targets.index(point.target)
    digits = {"target": t, "model": grid.models.index(point.model)}
    for axis, per_target in grid.resolved.items():
        if axis not in dict(grid.axes):
            if any(getattr(point, name) != value for name, value in per_target[t][0]):
                return False
            continue
        matches = [
            v for v, pairs in enumerate(per_target[t]) if all(getattr(point, name) == value for name, value in pairs)
        ]
        if not matches:
            return False
        digits[axis] = matches[0]
    order = [name for name, _ in grid._order()]
    index = int(np.ravel_multi_index(tuple(digits[name] for name in order), grid.shape))
    return grid.point(index, DesignPoint).point_id == point.point_id


def _resolve_point(context: _Context, where: str, model: str, combo: Mapping[str, Any]) -> DesignPoint:
    target = _resolve_target(context.path, f"{where}.target", combo["target"])
    _check_choices(context, target)
    fields: dict[str, Any] = {}
    for axis in _design_axes(combo):
        fields.update(_axis_fields(context, where, target, axis, combo.get(axis)))
    return DesignPoint(
        model=model,
        target=_target_ref(context.path, combo["target"]),
        allocate=context.allocate,
        sensitivity=context.sensitivity,
        choices=tuple(context.choices),
        **fields,
    )


# ---------------------------------------------------------------------------------------------------------
# Evaluating one point (runs on Dask workers)


def configure_target(base: Target, point: DesignPoint) -> Target:
    """``base`` with its clock, bandwidth, buffers and array replaced by the point's values."""
    arrayed = base.replace_array(rows=point.rows, cols=point.cols, dataflow=point.dataflow)
    acc = dataclasses.replace(
        arrayed.accelerator,
        buffers=dataclasses.replace(
            base.accelerator.buffers,
            ifmap_bytes=point.ifmap_bytes,
            filter_bytes=point.filter_bytes,
            ofmap_bytes=point.ofmap_bytes,
        ),
    )
    return dataclasses.replace(
        base,
        clock_mhz=point.clock_mhz,
        memory=dataclasses.replace(base.memory, bandwidth_gbps=point.bandwidth_gbps),
        accelerator=acc,
    )


def simulate_point(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    """Simulate ``workload`` at uniform (wbits, abits) on the point's design: cycles, latency, energy (mJ),
    resources."""
    from sim.simulate import simulate  # the function: `sim.simulate` is also a submodule name

    result = simulate(workload, target, bits=(point.wbits, point.abits))
    resources = result.resources
    return {
        "cycles": int(result.cycles),
        "compute_cycles": int(sum(layer.compute_cycles for layer in result.layers)),
        "stall_cycles": int(sum(layer.stall_cycles for layer in result.layers)),
        "latency_ms": float(result.latency_ms),
        "fits": bool(result.fits),
        "macs": int(workload.macs),
        "energy_mj": float(result.energy_mj),
        **{name: float(getattr(resources, name)) for name in _RESOURCES},
    }


def proxy_sensitivity(workload: Workload, bit_pairs: Iterable[tuple[int, int]]) -> pd.DataFrame:
    """A cheap sensitivity proxy for sweeps: each GEMM's quantization-noise energy on unit-range operands.

    A uniform b-bit quantizer of a range r has step r/2^b and noise variance step²/12 (Widrow), so the noise
    energy of n elements scales as n·4^(−b). Ω(w, a) = n_second·4^(−w) + n_first·4^(−a), with n_second the
    weight count (or the K×N activation elements of an attention matmul) and n_first the M×K input elements.
    It ranks layers by size only — no data, no torch; use a measured table (Hessian/Fisher) for real plans.
    """
    rows = []
    for gemm in workload.gemms:
        second = gemm.weight_params if gemm.b_is_weight and gemm.weight_params else gemm.k * gemm.n * gemm.count
        first = gemm.m * gemm.k * gemm.count
        for wbits, abits in bit_pairs:
            score = second * 4.0**-wbits + first * 4.0**-abits
            rows.append({"layer": gemm.name, "wbits": wbits, "abits": abits, "sensitivity": score})
    return pd.DataFrame(rows, columns=["layer", "wbits", "abits", "sensitivity"])


def _sensitivity_table(path: str) -> pd.DataFrame:
    """A sensitivity table file (CSV or parquet) with columns layer, wbits, abits, sensitivity."""
    return _read_table(path, os.stat(path).st_mtime_ns)


@lru_cache(maxsize=8)
def _read_table(path: str, mtime_ns: int) -> pd.DataFrame:
    """Read once per worker and file version (the modification time is part of the cache key)."""
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def _shown(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _table_problem(table: pd.DataFrame) -> str:
    """What is wrong with a sensitivity table's values ("" if nothing): bits must be integers >= 1, scores finite
    numbers >= 0, and each (layer, wbits, abits) given once."""
    if table.empty:
        return "no rows"
    for column in ("wbits", "abits"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values < 1) | (values % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            return f"row {row + 1}: {column}={_shown(table[column].iloc[row])!r} is not an integer >= 1"
    scores = pd.to_numeric(table["sensitivity"], errors="coerce")
    bad = scores.isna() | ~np.isfinite(scores) | (scores < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        return f"row {row + 1}: sensitivity={_shown(table['sensitivity'].iloc[row])!r} is not a finite number >= 0"
    keys = table[["layer", "wbits", "abits"]].astype(str)
    duplicated = keys.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        layer, wbits, abits = (_shown(table[c].iloc[row]) for c in ("layer", "wbits", "abits"))
        return f"row {row + 1}: layer {layer!r} W{wbits}A{abits} appears twice"
    return ""


def point_limits(point: DesignPoint) -> Any:
    """The ``allocator.ilp.Limits`` of an allocation point's budgets (absent ones are None)."""
    from allocator.ilp.model import Limits

    return Limits(
        latency_ms=point.limit_latency_ms,
        size_mb=point.limit_size_mb,
        bops=point.limit_bops,
        energy_mj=point.limit_energy_mj,
    )


def allocate_point(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    """Run the bit-allocation ILP on the point's design and budgets, then simulate the chosen plan.

    Sensitivity is ``proxy_sensitivity`` or the point's table file. An infeasible budget is a result
    (``status`` "infeasible", NaN costs), not an error.
    """
    from allocator.ilp.model import allocate
    from allocator.ilp.problem import build_problem
    from sim.simulate import simulate  # the function: `sim.simulate` is also a submodule name

    acc = target.accelerator
    pairs = list(point.choices) or [(w, a) for w in acc.weight_bits for a in acc.act_bits]
    if point.sensitivity == "proxy":
        scores = proxy_sensitivity(workload, pairs)
    else:
        scores = _sensitivity_table(point.sensitivity)
    limits = point_limits(point)
    problem = build_problem(workload, target, scores, pairs, prefer=limits.dataflow_preference())
    allocation = allocate(problem, limits)
    row: dict[str, Any] = {
        "status": allocation.status,
        "objective": math.nan if allocation.objective is None else float(allocation.objective),
        "message": allocation.message,
    }
    nan_costs = (
        "cycles", "latency_ms", "ilp_latency_ms", "size_mb", "gbops", "energy_mj", "mean_wbits", "mean_abits",
        *_RESOURCES,
    )  # fmt: skip
    if not allocation.ok or allocation.predicted is None:
        return {**row, **dict.fromkeys(nan_costs, math.nan), "fits": False, "plan": ""}
    bits = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    dataflows = {c.layer: c.dataflow for c in allocation.chosen if c.dataflow}
    result = simulate(workload, target, bits=bits, layer_dataflows=dataflows or None)
    return {
        **row,
        "cycles": float(result.cycles),
        "latency_ms": float(result.latency_ms),
        "ilp_latency_ms": float(allocation.predicted.latency_ms),
        "size_mb": float(allocation.predicted.size_mb),
        "gbops": float(allocation.predicted.bops),
        "energy_mj": float(allocation.predicted.energy_mj),
        "mean_wbits": sum(w for w, _ in bits.values()) / len(bits),
        "mean_abits": sum(a for _, a in bits.values()) / len(bits),
        "fits": bool(result.fits),
        **{name: float(getattr(result.resources, name)) for name in _RESOURCES},
        "plan": json.dumps(allocation.plan(), sort_keys=True),
    }


_RESOURCES = ("dsp", "lut", "ff", "bram36", "uram")


def default_evaluate(spec: SweepSpec) -> Evaluate:
    """Uniform simulation, or ILP allocation when the sweep sets ``allocate = true`` (one point at a time; a
    sweep run without ``evaluate`` uses the batched equivalents, ``batch.simulate_columns`` and
    ``codesign.allocate_points``)."""
    if spec.allocate:
        return allocate_point
    return simulate_point


# DesignPoint's fields in declaration order: the parameter columns of a result row, after point_id
_PARAMETERS = tuple(f.name for f in dataclasses.fields(DesignPoint))
_INT_PARAMETERS = ("rows", "cols", "ifmap_bytes", "filter_bytes", "ofmap_bytes", "wbits", "abits")


def _parameter_frame(columns: Mapping[str, np.ndarray], ids: Sequence[str], indices: np.ndarray) -> pd.DataFrame:
    """The points' parameters as parquet-friendly columns (``DesignPoint.to_row`` for a slice)."""
    data: dict[str, Any] = {"point_id": np.asarray(ids, dtype=object), "point_index": np.asarray(indices, np.int64)}
    for name in _PARAMETERS:
        values = columns[name]
        if name in _INT_PARAMETERS:
            data[name] = np.asarray(values, dtype=np.int64)
        elif name in ("clock_mhz", "bandwidth_gbps"):
            data[name] = np.asarray(values, dtype=np.float64)
        elif name.startswith("limit_"):
            data[name] = np.array([math.nan if v is None else v for v in values.tolist()], dtype=np.float64)
        elif name == "allocate":
            data[name] = np.asarray(values, dtype=bool)
        elif name == "choices":
            text = {}
            data[name] = [text.setdefault(v, " ".join(f"{w}/{a}" for w, a in v)) for v in values.tolist()]
        else:
            data[name] = values
    return pd.DataFrame(data)


def _evaluate_chunk(
    points: Points,
    indices: np.ndarray,
    workloads: Mapping[str, Workload],
    targets: Mapping[str, Target],
    evaluate_pickle: bytes | None,
) -> pd.DataFrame:
    """Rows of the points at ``indices``: parameters, results, ``error`` and ``eval_s`` (s per point).

    Without ``evaluate`` (it arrives cloudpickled, see below) a simulation sweep runs ``batch.simulate_columns``
    over the whole slice and an allocation sweep ``codesign.allocate_points``; with it, points run one by one.
    A point whose input the simulator rejects gets its error, not a crash. Dask pickles task arguments by
    reference where plain pickle can, and a worker started apart cannot import a function defined in a
    notebook, a script or a test module, hence cloudpickle.
    """
    start = time.perf_counter()
    grid = points.grid
    if grid is not None and len(indices) and int(indices.max()) < points.grid_size:
        columns = grid.columns(indices)
        ids = grid.ids(indices)
    else:
        columns = points.columns(indices)
        ids = points.ids(indices)
    frame = _parameter_frame(columns, ids, indices)
    allocate = bool(len(indices)) and bool(columns["allocate"][0])
    if evaluate_pickle is None and not allocate:
        from allocator.sweep.batch import simulate_columns

        results = pd.DataFrame(simulate_columns(workloads, targets, columns))
    else:
        chosen = points.slice_points(indices)
        if evaluate_pickle is None:
            from allocator.sweep.codesign import allocate_points

            results = pd.DataFrame(allocate_points(workloads, targets, chosen))
        else:
            import cloudpickle

            evaluate = cloudpickle.loads(evaluate_pickle)
            rows = []
            for point in chosen:
                row: dict[str, Any] = {}
                try:
                    row.update(evaluate(workloads[point.model], configure_target(targets[point.target], point), point))
                    row["error"] = ""
                except InputError as exc:
                    row["error"] = str(exc).splitlines()[0]
                rows.append(row)
            results = pd.DataFrame(rows)
    frame = pd.concat([frame, results.reset_index(drop=True)], axis=1)
    frame["eval_s"] = (time.perf_counter() - start) / max(1, len(indices))
    return frame


# ---------------------------------------------------------------------------------------------------------
# The parquet dataset


def finished_ids(out: str | Path) -> set[str]:
    """Ids of the points already stored under ``out`` (an absent directory has none)."""
    return Dataset(out).ids()


def _fingerprint(spec: SweepSpec) -> str:
    """What makes two runs the same sweep: its points (grid axes, models, explicit points) and evaluation."""
    points = spec.points
    grid = points.grid if isinstance(points, Points) else None
    described = {
        "grid": None if grid is None else [list(grid.targets), list(grid.models), [list(a) for a in grid.axes]],
        "extra": [p.point_id for p in points.extra] if isinstance(points, Points) else [p.point_id for p in points],
        "allocate": spec.allocate,
        "sensitivity": spec.sensitivity,
        "choices": [list(c) for c in spec.choices],
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Running on Dask


def _chunk_size(spec: SweepSpec, todo: int, workers: int) -> int:
    if spec.points_per_part:
        return spec.points_per_part
    # a few tasks per worker balances load; each task is one part file (one row group), so not too small either
    ceiling = 2_000 if spec.allocate else 50_000
    return max(1, min(ceiling, math.ceil(todo / (4 * max(workers, 1)))))


def build_workloads(models: Iterable[str]) -> dict[str, Workload]:
    """One workload per model, built once in the client process (torch is not needed on workers)."""
    from allocator import workload_from_model

    return {model: workload_from_model(model) for model in models}


def _as_points(spec: SweepSpec) -> Points:
    if isinstance(spec.points, Points):
        return spec.points
    return Points(None, tuple(spec.points), DesignPoint)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    evaluate: Evaluate | None = None,
    workloads: Mapping[str, Workload] | None = None,
    progress: bool = True,
    connect_timeout_s: float = 10.0,
) -> SweepSummary:
    """Evaluate every point of ``spec`` not already stored under ``out``, on Dask, one part file per chunk.

    The cluster is, in order of preference: ``client`` (an existing ``distributed.Client``), the scheduler
    at ``scheduler`` (``tcp://host:port``), or a new ``LocalCluster`` of ``workers`` single-threaded
    processes (default: the CPU count); none is started when every point is already stored. Workloads are
    built once here and scattered to every worker. ``out`` is locked for the run (a second sweep on it fails),
    must hold this sweep's results or none, and keeps no ``_sweep.json`` if nothing was stored. If a chunk
    fails, the other chunks still finish and are stored, then the first error is raised.
    """
    start = time.perf_counter()
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(out)
    points = _as_points(spec)
    fingerprint = _fingerprint(spec)
    sweep_file = str(spec.path.resolve())
    where = str(client.scheduler.address) if client is not None else (scheduler or "local")
    n_workers = done = errors = parts = pareto_points = 0
    cluster_s = workload_s = pareto_s = 0.0
    try:
        with dataset.lock():
            dataset.check_manifest(spec.name, fingerprint, sweep_file)
            dataset.clean_temporaries()
            stored = dataset.done_mask(len(points), points.ids)
            todo = np.flatnonzero(~stored)
            skipped = len(points) - len(todo)
            if len(todo):
                if workloads is None:
                    _check_models(spec)  # a misspelt model fails here, before a cluster starts
                checked = time.perf_counter()
                with _cluster(client, scheduler, workers, connect_timeout_s) as connected:
                    worker_addresses = list(connected.scheduler_info().get("workers", {}))
                    n_workers = len(worker_addresses) or 1
                    cluster_s = time.perf_counter() - checked
                    warm_ups = []
                    if evaluate is None:
                        # workers load the simulator and compile or load its kernels while the workloads build
                        target = next(iter(spec.targets.values()))
                        warm_ups = [  # held: Dask forgets a task whose futures are all dropped
                            connected.submit(_warm_up, target, workers=[address], allow_other_workers=False, pure=False)
                            for address in worker_addresses
                        ]
                    if workloads is None:
                        models = dict.fromkeys(points.columns(todo[:1])["model"].tolist() + list(spec.models))
                        workloads = build_workloads(models)
                    _check_sensitivity(spec, workloads)
                    workload_s = time.perf_counter() - start - cluster_s  # model check and build
                    evaluate_pickle = None if evaluate is None else _pickle(evaluate)
                    size = _chunk_size(spec, len(todo), n_workers)
                    for frame in _evaluate_on(connected, spec.name, points, todo, size, workloads, spec.targets,
                                              evaluate_pickle, progress):  # fmt: skip
                        if parts == 0 and dataset.manifest() is None:
                            dataset.write_manifest(spec.name, fingerprint, sweep_file, len(points))
                        dataset.write_part(frame)
                        parts += 1
                        done += len(frame)
                        errors += int((frame["error"].astype(str) != "").sum()) if "error" in frame else 0
                    del warm_ups
            if done or not (out / PARETO).exists():
                began = time.perf_counter()
                pareto_points = dataset.write_pareto()
                pareto_s = time.perf_counter() - began
    except BaseException:
        if created and not dataset.parts():
            shutil.rmtree(out, ignore_errors=True)  # nothing stored: leave no directory, manifest or lock behind
        raise
    return SweepSummary(
        points=len(points),
        done=done,
        skipped=skipped,
        errors=errors,
        parts=parts,
        out=str(out),
        wall_s=round(time.perf_counter() - start, 3),
        workload_s=round(workload_s, 3),
        cluster_s=round(cluster_s, 3),
        scheduler=where,
        workers=n_workers,
        pareto=pareto_points,
        pareto_s=round(pareto_s, 3),
    )


def _pickle(evaluate: Evaluate) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(evaluate)


def _check_models(spec: SweepSpec) -> None:
    """Every model is a testbed model or a timm model name (``quant.create_model`` builds either)."""
    from quant._torch import import_timm
    from quant.models import TESTBED_MODELS

    unknown = [name for name in spec.models if name not in TESTBED_MODELS and not import_timm().is_model(name)]
    if unknown:
        raise InputError(
            f"{spec.path}: key 'models': unknown model {unknown[0]!r}: not a timm model name nor a testbed model "
            f"({', '.join(sorted(TESTBED_MODELS))})"
        )


def _check_sensitivity(spec: SweepSpec, workloads: Mapping[str, Workload]) -> None:
    """A sensitivity table must name GEMMs of the swept models (checked here, not in a worker)."""
    if not spec.allocate or spec.sensitivity in ("", "proxy"):
        return
    table = _sensitivity_table(spec.sensitivity)
    names = set(table["layer"].astype(str))
    for model, workload in workloads.items():
        gemms = {g.name for g in workload.gemms}
        unknown = sorted(names - gemms)
        if unknown:
            raise _fail(spec.path, "sensitivity", f"layer {unknown[0]!r} is not a GEMM of {model!r}")
        unscored = [name for name in gemms if name not in names]
        if unscored:
            raise _fail(spec.path, "sensitivity", f"no score for layer {unscored[0]!r} of {model!r}")


def _warm_up(target: Target) -> None:
    """Import the simulator and run its jitted kernels once on a one-GEMM workload (a warm-up, so no result)."""
    from sim.simulate import simulate
    from sim.workload import Gemm

    workload = Workload.from_ops("warm_up", [Gemm("warm_up", "gemm", 8, 8, 8, weight_params=64)])
    with contextlib.suppress(Exception):
        simulate(workload, target)
    with contextlib.suppress(Exception):
        from sim.batch import fused_gemm_costs, gemm_shapes

        shapes, _ = gemm_shapes(workload, target)
        fused_gemm_costs(np.ones((1, 14), dtype=np.int64), np.ones(1), shapes[:1, 4], workload, target)


@contextlib.contextmanager
def _cluster(client: Any, scheduler: str | None, workers: int | None, timeout_s: float) -> Iterator[Any]:
    """The given client, a client of the scheduler at ``scheduler``, or one of a new LocalCluster."""
    from distributed import Client, LocalCluster

    if client is not None:
        yield client
        return
    if scheduler:
        try:
            connected = Client(scheduler, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} ({exc})") from None
        with connected:
            yield connected
        return
    # worker processes inherit an ignored SIGINT: Ctrl-C in a terminal (sent to the whole process group) then
    # interrupts this process only, which closes the cluster, instead of printing a traceback from every worker
    with _sigint_ignored():
        local = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: the scheduler's HTTP routes would otherwise clash on 8787
            silence_logs=logging.CRITICAL,
        )
    from distributed.utils import silence_logging_cmgr

    with contextlib.ExitStack() as quiet, local, Client(local) as connected:  # quiet exits last
        try:
            yield connected
        except BaseException:
            # Ctrl-C or an error: while the cluster closes, its scheduler (in this process) logs each message it
            # can no longer send to the closed client at CRITICAL, with a traceback; the CLI's one error line
            # already says what happened
            quiet.enter_context(silence_logging_cmgr(logging.CRITICAL + 1))
            raise


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _evaluate_on(
    client: Any,
    name: str,
    points: Points,
    todo: np.ndarray,
    size: int,
    workloads: Mapping[str, Workload],
    targets: Mapping[str, Target],
    evaluate_pickle: bytes | None,
    progress: bool,
) -> Iterator[pd.DataFrame]:
    """Submit chunks (the workloads scattered once) and yield each chunk's rows as it finishes.

    A failed chunk does not stop the others: they are yielded (and stored) first, then its error is raised.
    """
    from distributed import as_completed
    from tqdm import tqdm

    shipped = client.scatter(dict(workloads), broadcast=True, hash=False)
    shipped_points = client.scatter(points, broadcast=True, hash=False)
    shipped_targets = client.scatter(dict(targets), broadcast=True, hash=False)
    futures = [
        client.submit(
            _evaluate_chunk, shipped_points, todo[i : i + size], shipped, shipped_targets, evaluate_pickle, pure=False
        )
        for i in range(0, len(todo), size)
    ]
    first_error: BaseException | None = None
    with tqdm(total=len(todo), unit="pt", desc=name, file=sys.stderr, disable=not progress) as bar:
        for future in as_completed(futures):
            try:
                frame = future.result()
            except Exception as exc:
                first_error = first_error or exc
                continue
            future.release()
            yield frame
            bar.update(len(frame))
    if first_error is not None:
        raise first_error
