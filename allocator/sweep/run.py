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
    bits = [[8, 8], [4, 8]]          # uniform (wbits, abits) for every layer

A ``[[point]]`` table takes the same keys with one value each (plus ``model``, else every model) and
adds one design; grid and points may be combined, and a design given twice is kept once.

With ``allocate = true`` every point runs the bit-allocation ILP instead of a uniform simulation; the grid
then has budget axes (``latency_ms``, ``size_mb``, ``bops`` in GBOPs) instead of ``bits``, ``choices``
lists the candidate [wbits, abits] pairs (default: all the target supports) and ``sensitivity`` is
``"proxy"`` (``proxy_sensitivity``, no data needed) or a CSV/parquet table with columns layer, wbits,
abits, sensitivity (e.g. measured Hessian traces), relative to the sweep file.

Each design point is fully resolved against its target before any work (defaults filled in), and its id is
a hash of those parameters, so the same file always yields the same ids. Results are a parquet dataset: a
directory of ``part-*.parquet`` files, each written under a temporary name and moved into place with
``os.replace``, so a part is either whole or absent. A rerun reads the ids already there and evaluates only
the rest: an interrupted sweep loses no finished part and writes no point twice. A point the simulator
rejects (``InputError``) is stored with its ``error`` text and counts as done; any other exception stops the
sweep after the other batches are stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from allocator.sweep.spec import BUDGET_AXES, SweepFile
from sim.errors import InputError
from sim.schema import read_toml, validate
from sim.target import Target
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


# evaluate(workload, target configured for the point, point) -> result columns of the point's row
Evaluate = Callable[[Workload, Target, "DesignPoint"], Mapping[str, Any]]


@dataclass(frozen=True)
class DesignPoint:
    """One design: a model on a target with every hardware parameter resolved (no defaults left open).

    ``wbits``/``abits`` are the uniform bits of a simulation point and 0 on allocation points, whose bits
    the ILP chooses among ``choices`` (empty: every pair the target supports) under the budgets
    ``limit_latency_ms`` (ms), ``limit_size_mb`` (1e6 bytes) and ``limit_bops`` (1e9 bit operations); an absent
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
    sensitivity: str = ""
    choices: tuple[tuple[int, int], ...] = ()

    @property
    def point_id(self) -> str:
        """Stable 16-hex-digit id: a hash of every parameter, so reruns of a file find the same ids."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
    points: tuple[DesignPoint, ...]
    targets: Mapping[str, Target]
    allocate: bool
    sensitivity: str
    choices: tuple[tuple[int, int], ...]
    points_per_part: int | None


@dataclass(frozen=True)
class SweepSummary:
    """What one run of a sweep did. ``done`` points were evaluated now, ``skipped`` were already on disk.

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


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse and validate a sweep file completely (every target loaded, every value checked) before any work.

    The file's shape is ``allocator.sweep.spec.SweepFile``; this adds what needs other files (targets, the
    sensitivity table). Raises ``InputError`` ``FILE: dotted.key: reason`` on the first problem found.
    """
    path = Path(path)
    spec = validate(SweepFile, read_toml(path, "sweep"), path)
    allocate = spec.allocate
    sensitivity = spec.sensitivity or ("proxy" if allocate else "")
    if allocate and sensitivity != "proxy":
        sensitivity = _check_sensitivity_table(path, sensitivity)
    choices = tuple((w, a) for w, a in spec.choices or ())

    combos: list[dict[str, Any]] = []
    if spec.grid is not None:
        axes = {axis: values for axis, values in spec.grid.model_dump(exclude_none=True).items()}
        for i, name in enumerate(axes["target"]):
            _resolve_target(path, f"grid.target[{i}]", name)  # a target that does not load fails here, before any work
        names = list(axes)
        combos += [dict(zip(names, values, strict=True), _key="grid") for values in product(*axes.values())]
    for i, table in enumerate(spec.point):
        combos.append({**table.model_dump(exclude_none=True), "_key": f"point[{i}]"})

    points: dict[str, DesignPoint] = {}
    for combo in combos:
        where = combo.pop("_key")
        point_models = (combo.pop("model"),) if "model" in combo else tuple(spec.models)
        target = _resolve_target(path, f"{where}.target", combo["target"])
        for model in point_models:
            point = _resolve_point(path, where, model, target, combo, allocate, sensitivity, choices)
            points.setdefault(point.point_id, point)
    return SweepSpec(
        path=path,
        name=spec.name or path.stem,
        models=tuple(dict.fromkeys([*spec.models, *(p.model for p in points.values())])),
        points=tuple(points.values()),
        targets={p.target: _cached_target(p.target) for p in points.values()},
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
        raise _fail(path, "sensitivity", f"cannot read {table}: {exc}") from None
    missing = {"layer", "wbits", "abits", "sensitivity"} - columns
    if missing:
        raise _fail(path, "sensitivity", f"{table} lacks column(s) {', '.join(sorted(missing))}")
    return resolved


def _resolve_point(
    path: Path,
    where: str,
    model: str,
    target: Target,
    combo: Mapping[str, Any],
    allocate: bool,
    sensitivity: str,
    choices: Sequence[tuple[int, int]],
) -> DesignPoint:
    acc = target.accelerator
    buffers = acc.buffers
    total = buffers.ifmap_bytes + buffers.filter_bytes + buffers.ofmap_bytes
    if "buffer_split" in combo:
        ifmap_share, filter_share, _ = combo["buffer_split"]
        ifmap_bytes = int(total * ifmap_share)
        filter_bytes = int(total * filter_share)
        split = (ifmap_bytes, filter_bytes, total - ifmap_bytes - filter_bytes)
    else:
        split = (buffers.ifmap_bytes, buffers.filter_bytes, buffers.ofmap_bytes)
    wbits, abits = combo.get("bits", (0, 0) if allocate else (max(acc.weight_bits), max(acc.act_bits)))
    for bits, supported, role in ((wbits, acc.weight_bits, "wbits"), (abits, acc.act_bits, "abits")):
        if not allocate and bits not in supported:
            raise _fail(path, f"{where}.bits", f"{role}={bits} not supported by target {target.name!r} {supported}")
    for w, a in choices:
        if w not in acc.weight_bits or a not in acc.act_bits:
            raise _fail(path, "choices", f"[{w}, {a}] not supported by target {target.name!r}")
    return DesignPoint(
        model=model,
        target=_target_ref(path, combo["target"]),
        rows=combo.get("rows", acc.rows),
        cols=combo.get("cols", acc.cols),
        dataflow=combo.get("dataflow", acc.dataflow),
        clock_mhz=float(combo.get("clock_mhz", target.clock_mhz)),
        bandwidth_gbps=float(combo.get("bandwidth_gbps", target.memory.bandwidth_gbps)),
        ifmap_bytes=split[0],
        filter_bytes=split[1],
        ofmap_bytes=split[2],
        wbits=wbits,
        abits=abits,
        allocate=allocate,
        limit_latency_ms=combo.get("latency_ms"),
        limit_size_mb=combo.get("size_mb"),
        limit_bops=combo.get("bops"),
        sensitivity=sensitivity,
        choices=tuple(choices),
    )


# ---------------------------------------------------------------------------------------------------------
# Evaluating one point (runs on Dask workers)


def configure_target(base: Target, point: DesignPoint) -> Target:
    """``base`` with its clock, bandwidth, buffers and array replaced by the point's values."""
    acc = dataclasses.replace(
        base.accelerator,
        rows=point.rows,
        cols=point.cols,
        dataflow=point.dataflow,
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
    """Simulate ``workload`` at uniform (wbits, abits) on the point's design: cycles, latency, resources."""
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


def allocate_point(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    """Run the bit-allocation ILP on the point's design and budgets, then simulate the chosen plan.

    Sensitivity is ``proxy_sensitivity`` or the point's table file. An infeasible budget is a result
    (``status`` "infeasible", NaN costs), not an error.
    """
    from allocator.ilp.model import Limits, allocate
    from allocator.ilp.problem import build_problem
    from sim.simulate import simulate  # the function: `sim.simulate` is also a submodule name

    acc = target.accelerator
    pairs = list(point.choices) or [(w, a) for w in acc.weight_bits for a in acc.act_bits]
    if point.sensitivity == "proxy":
        scores = proxy_sensitivity(workload, pairs)
    else:
        scores = _sensitivity_table(point.sensitivity)
    problem = build_problem(workload, target, scores, pairs)
    limits = Limits(latency_ms=point.limit_latency_ms, size_mb=point.limit_size_mb, bops=point.limit_bops)
    allocation = allocate(problem, limits)
    row: dict[str, Any] = {
        "status": allocation.status,
        "objective": math.nan if allocation.objective is None else float(allocation.objective),
        "message": allocation.message,
    }
    nan_costs = ("cycles", "latency_ms", "ilp_latency_ms", "size_mb", "gbops", "mean_wbits", "mean_abits", *_RESOURCES)
    if not allocation.ok or allocation.predicted is None:
        return {**row, **dict.fromkeys(nan_costs, math.nan), "fits": False, "plan": ""}
    bits = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    result = simulate(workload, target, bits=bits)
    return {
        **row,
        "cycles": float(result.cycles),
        "latency_ms": float(result.latency_ms),
        "ilp_latency_ms": float(allocation.predicted.latency_ms),
        "size_mb": float(allocation.predicted.size_mb),
        "gbops": float(allocation.predicted.bops),
        "mean_wbits": sum(w for w, _ in bits.values()) / len(bits),
        "mean_abits": sum(a for _, a in bits.values()) / len(bits),
        "fits": bool(result.fits),
        **{name: float(getattr(result.resources, name)) for name in _RESOURCES},
        "plan": json.dumps(allocation.plan(), sort_keys=True),
    }


_RESOURCES = ("dsp", "lut", "ff", "bram36", "uram")


def default_evaluate(spec: SweepSpec) -> Evaluate:
    """Uniform simulation, or ILP allocation when the sweep sets ``allocate = true``."""
    if spec.allocate:
        return allocate_point
    return simulate_point


def _evaluate_batch(
    workload: Workload, targets: Mapping[str, Target], points: Sequence[DesignPoint], evaluate_pickle: bytes
) -> list[dict[str, Any]]:
    """Evaluate points one by one; a point whose input the simulator rejects gets its error, not a crash.

    ``evaluate`` arrives cloudpickled: Dask pickles task arguments by reference where plain pickle can, and a
    worker started apart cannot import a function defined in a notebook, a script or a test module.
    """
    import cloudpickle

    evaluate = cloudpickle.loads(evaluate_pickle)
    rows = []
    for point in points:
        start = time.perf_counter()
        row = point.to_row()
        try:
            row.update(evaluate(workload, configure_target(targets[point.target], point), point))
            row["error"] = ""
        except InputError as exc:
            row["error"] = str(exc).splitlines()[0]
        row["eval_s"] = time.perf_counter() - start
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# The parquet dataset


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def finished_ids(out: str | Path) -> set[str]:
    """Ids of the points already stored under ``out`` (an absent directory has none)."""
    import pyarrow.parquet as pq

    out = Path(out)
    ids: set[str] = set()
    for part in _parts(out):
        ids.update(pq.read_table(part, columns=["point_id"]).column("point_id").to_pylist())
    return ids


def read_results(out: str | Path) -> pd.DataFrame:
    """All stored rows of a sweep, one per point, sorted by point id (parts may differ in result columns)."""
    out = Path(out)
    parts = _parts(out)
    if not parts:
        return pd.DataFrame(columns=["point_id"])
    frames = [pd.read_parquet(part) for part in parts]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.sort_values("point_id", kind="stable").reset_index(drop=True)


def _write_part(out: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as one part: a temporary file first, then ``os.replace`` (atomic on one file system)."""
    ids = sorted(row["point_id"] for row in rows)
    digest = hashlib.sha256("".join(ids).encode()).hexdigest()[:16]
    final = out / f"part-{digest}.parquet"
    temporary = out / f".part-{digest}.{os.getpid()}.tmp"
    pd.DataFrame(rows).to_parquet(temporary, index=False)
    os.replace(temporary, final)
    return final


def _clean_temporaries(out: Path) -> None:
    for stale in out.glob(".part-*.tmp"):
        stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Running on Dask


def _batches(points: Sequence[DesignPoint], size: int) -> Iterable[list[DesignPoint]]:
    for start in range(0, len(points), size):
        yield list(points[start : start + size])


def _batch_size(spec: SweepSpec, todo: int, workers: int) -> int:
    if spec.points_per_part:
        return spec.points_per_part
    # a few tasks per worker balances load; more tasks mean more part files and more scheduler overhead
    return max(1, min(250, math.ceil(todo / (4 * max(workers, 1)))))


def build_workloads(models: Iterable[str]) -> dict[str, Workload]:
    """One workload per model, built once in the client process (torch is not needed on workers)."""
    from allocator import workload_from_model

    return {model: workload_from_model(model) for model in models}


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
    """Evaluate every point of ``spec`` not already stored under ``out``, on Dask, one part file per batch.

    The cluster is, in order of preference: ``client`` (an existing ``distributed.Client``), the scheduler
    at ``scheduler`` (``tcp://host:port``), or a new ``LocalCluster`` of ``workers`` single-threaded
    processes (default: the CPU count); none is started when every point is already stored. Workloads are
    built once here and scattered to every worker. If a batch fails, the other batches still finish and are
    stored, then the first error is raised.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(out)
    done_before = finished_ids(out)
    todo = [p for p in spec.points if p.point_id not in done_before]
    skipped = len(spec.points) - len(todo)
    _write_manifest(out, spec)

    where = str(client.scheduler.address) if client is not None else (scheduler or "local")
    n_workers = done = errors = parts = 0
    cluster_s = workload_s = 0.0
    if todo:
        if workloads is None:
            _check_models(spec)  # a misspelt model fails here, before a cluster starts
        checked = time.perf_counter()
        with _cluster(client, scheduler, workers, connect_timeout_s) as connected:
            worker_addresses = list(connected.scheduler_info().get("workers", {}))
            n_workers = len(worker_addresses) or 1
            cluster_s = time.perf_counter() - checked
            warm_ups = []
            if evaluate is None:
                # workers load the simulator and its compiled kernels while this process builds the workloads
                target = spec.targets[todo[0].target]
                warm_ups = [  # held: Dask forgets a task whose futures are all dropped
                    connected.submit(_warm_up, target, workers=[address], allow_other_workers=False, pure=False)
                    for address in worker_addresses
                ]
            if workloads is None:
                workloads = build_workloads(dict.fromkeys(p.model for p in todo))
            workload_s = time.perf_counter() - start - cluster_s  # model check and build
            for rows in _evaluate_on(connected, spec, todo, workloads, evaluate or default_evaluate(spec), progress):
                _write_part(out, rows)
                parts += 1
                done += len(rows)
                errors += sum(1 for row in rows if row.get("error"))
            del warm_ups
    return SweepSummary(
        points=len(spec.points),
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
    )


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


def _warm_up(target: Target) -> None:
    """Import the simulator and run its jitted kernels once on a one-GEMM workload (a warm-up, so no result)."""
    from sim.simulate import simulate
    from sim.workload import Gemm

    with contextlib.suppress(Exception):
        simulate(Workload.from_ops("warm_up", [Gemm("warm_up", "gemm", 8, 8, 8, weight_params=64)]), target)


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
    local = LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: the scheduler's HTTP routes would otherwise clash on 8787
        silence_logs=logging.ERROR,
    )
    with local, Client(local) as connected:
        yield connected


def _evaluate_on(
    client: Any,
    spec: SweepSpec,
    todo: Sequence[DesignPoint],
    workloads: Mapping[str, Workload],
    evaluate: Evaluate,
    progress: bool,
) -> Iterator[list[dict[str, Any]]]:
    """Submit batches (each model's workload scattered once) and yield each batch's rows as it finishes.

    A failed batch does not stop the others: they are yielded (and stored) first, then its error is raised.
    """
    import cloudpickle
    from distributed import as_completed
    from tqdm import tqdm

    n_workers = len(client.scheduler_info().get("workers", {})) or 1
    size = _batch_size(spec, len(todo), n_workers)
    by_model: dict[str, list[DesignPoint]] = {}
    for point in todo:
        by_model.setdefault(point.model, []).append(point)
    evaluate_pickle = cloudpickle.dumps(evaluate)
    futures = []
    for model, points in by_model.items():
        shipped = client.scatter(workloads[model], broadcast=True, hash=False)
        for batch in _batches(points, size):
            targets = {p.target: spec.targets[p.target] for p in batch}
            futures.append(client.submit(_evaluate_batch, shipped, targets, batch, evaluate_pickle, pure=False))
    first_error: BaseException | None = None
    with tqdm(total=len(todo), unit="pt", desc=spec.name, file=sys.stderr, disable=not progress) as bar:
        for future in as_completed(futures):
            try:
                rows = future.result()
            except Exception as exc:
                first_error = first_error or exc
                continue
            yield rows
            bar.update(len(rows))
    if first_error is not None:
        raise first_error


def _write_manifest(out: Path, spec: SweepSpec) -> None:
    """Record which sweep file filled this directory (``_``-prefixed files are ignored by parquet readers)."""
    manifest = {"name": spec.name, "sweep_file": str(spec.path.resolve()), "points": len(spec.points)}
    temporary = out / f"._sweep.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(temporary, out / "_sweep.json")
