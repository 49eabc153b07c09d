"""Evaluate a slice of sweep points at once: one jitted simulator call for all of them, each distinct
(GEMM shape, array, bits, memory) tuple simulated once, resources estimated once per distinct design.

``simulate_columns`` gives, point for point, what ``run.simulate_point`` (one ``sim.simulate`` per point) gives:
a ViT repeats its GEMM shapes in every block and a grid repeats designs across models and memory settings,
so the slice's (GEMM, design) rows are deduplicated before the kernel runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from sim.batch import DATAFLOW_CODES, gemm_costs
from sim.errors import InputError
from sim.pe import macs_per_pe
from sim.target import Target
from sim.workload import Workload

__all__ = ["RESOURCES", "simulate_columns"]

RESOURCES = ("dsp", "lut", "ff", "bram36", "uram")


def _shapes(workload: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (m, n, k, count) of the workload's GEMMs and how many GEMMs have each."""
    counts: dict[tuple[int, int, int, int], int] = {}
    for gemm in workload.gemms:
        for dim in ("m", "n", "k", "count"):
            if getattr(gemm, dim) <= 0:
                raise InputError(f"GEMM {gemm.name!r} has {dim}={getattr(gemm, dim)}; must be > 0")
        key = (gemm.m, gemm.n, gemm.k, gemm.count)
        counts[key] = counts.get(key, 0) + 1
    shapes = np.array(list(counts), dtype=np.int64).reshape(len(counts), 4)
    return shapes, np.array(list(counts.values()), dtype=np.int64)


# (target text, rows, cols, dataflow, buffers, bits) -> resources: lives as long as the worker process
_RESOURCE_CACHE: dict[tuple, tuple] = {}
_RESOURCE_CACHE_MAX = 200_000


def _resources(
    target: Target, stamp: str, rows: int, cols: int, dataflow: str, buffers: tuple[int, int, int], bits: tuple
) -> tuple:
    """(dsp, lut, ff, bram36, uram, fits) of the design; clock and bandwidth do not enter the resource model.

    ``stamp`` is the target's repr: a target file edited between two sweeps on one long-lived worker is a new key.
    """
    key = (stamp, rows, cols, dataflow, buffers, bits)
    hit = _RESOURCE_CACHE.get(key)
    if hit is None:
        if len(_RESOURCE_CACHE) >= _RESOURCE_CACHE_MAX:
            _RESOURCE_CACHE.clear()
        hit = _RESOURCE_CACHE[key] = _estimate(target, rows, cols, dataflow, buffers, bits)
    return hit


def _estimate(target: Target, rows: int, cols: int, dataflow: str, buffers: tuple[int, int, int], bits: tuple) -> tuple:
    import dataclasses

    from sim.resources import estimate_resources

    acc = target.accelerator
    acc = dataclasses.replace(
        acc,
        rows=rows,
        cols=cols,
        dataflow=dataflow,
        buffers=dataclasses.replace(
            acc.buffers, ifmap_bytes=buffers[0], filter_bytes=buffers[1], ofmap_bytes=buffers[2]
        ),
    )
    result = estimate_resources(dataclasses.replace(target, accelerator=acc), bits[0], bits[1])
    return (*(float(getattr(result, name)) for name in RESOURCES), bool(result.fits))


def _batchable(target: Target) -> bool:
    acc = target.accelerator
    return not getattr(acc, "fold_pipelining", False) and not getattr(
        getattr(acc, "nonlinear", None), "configured", False
    )


def _mixed(
    workloads: Mapping[str, Workload],
    targets: Mapping[str, Target],
    columns: Mapping[str, np.ndarray],
    exact: np.ndarray,
) -> dict[str, np.ndarray]:
    """Batched rows for legacy-timing designs, ``run.simulate_point`` for the others, in the given order."""
    from allocator.sweep.grid import FIELDS, _scalar
    from allocator.sweep.run import DesignPoint, configure_target, simulate_point

    n = len(exact)
    batched = simulate_columns(workloads, targets, {k: v[exact] for k, v in columns.items()}) if exact.any() else {}
    out = {name: np.empty(n, dtype=values.dtype) for name, values in batched.items()}
    for name, values in batched.items():
        out[name][exact] = values
    for i in np.flatnonzero(~exact).tolist():
        point = DesignPoint(**{name: _scalar(columns[name][i]) for name in FIELDS})
        try:
            row = simulate_point(workloads[point.model], configure_target(targets[point.target], point), point)
            row["omega"] = _proxy_omega(workloads[point.model], point.wbits, point.abits)
            row["error"] = ""
        except InputError as exc:
            row = {"error": str(exc).splitlines()[0]}
        for name, value in row.items():
            if name not in out:
                out[name] = np.full(n, np.nan if name != "error" else "", dtype=object if name == "error" else None)
            out[name][i] = value
    return out


def _energy_mj(
    workload: Workload,
    targets: Mapping[str, Target],
    refs: list[str],
    idx: np.ndarray,
    configs: np.ndarray,
    first: np.ndarray,
    inverse: np.ndarray,
    costs: np.ndarray,
    shapes: np.ndarray,
) -> np.ndarray:
    """Dynamic energy (mJ) of each point, summed over the workload's operators in order as ``sim.simulate`` does
    (so the float sum is the same): a GEMM's from its shape's simulated DRAM bytes, a vector operator's fixed."""
    from sim.energy import PJ_PER_MJ, energy_model
    from sim.simulate import _shape_energy_mj, _vector_energy_pj

    names = {code: name for name, code in DATAFLOW_CODES.items()}
    ref_list = list(dict.fromkeys(refs[i] for i in idx))
    models = {ref: energy_model(targets[ref]) for ref in ref_list}
    # one energy per distinct (GEMM, design) row; the row's design fixes its target's energy model via its point
    row_ref = np.array([refs[i] for i in idx], dtype=object).repeat(len(shapes))[first]
    unique_energy = np.empty(len(first))
    for u, (config, ref) in enumerate(zip(configs[first].tolist(), row_ref.tolist(), strict=True)):
        dataflow, rows, cols, _, m, n, k, count, abits, wbits = config[:10]
        dram = int(costs[u, 2] + costs[u, 3])
        unique_energy[u] = _shape_energy_mj(
            models[ref], names[dataflow], rows, cols, m, n, k, count, (wbits, abits), dram, False
        )
    per_shape = unique_energy[inverse].reshape(len(idx), len(shapes))
    position = {tuple(shape): j for j, shape in enumerate(shapes.tolist())}
    ops = workload.ops
    from sim.workload import Gemm

    columns = []
    for op in ops:
        if isinstance(op, Gemm):
            columns.append(per_shape[:, position[(op.m, op.n, op.k, op.count)]])
        else:
            vector = {ref: _vector_energy_pj(op, models[ref].lane_op_pj) / PJ_PER_MJ for ref in ref_list}
            columns.append(np.array([vector[refs[i]] for i in idx], dtype=np.float64))
    if not columns:
        return np.zeros(len(idx))
    stacked = np.concatenate([np.zeros((len(idx), 1)), np.stack(columns, axis=1)], axis=1)
    return np.add.accumulate(stacked, axis=1)[:, -1]  # left to right, as Python's sum over the layers


def _proxy_omega(workload: Workload, wbits: int, abits: int) -> float:
    """Σ Ω of the uniform plan under the size-based proxy (``run.proxy_sensitivity``): the accuracy axis of a
    simulation sweep's Pareto front."""
    from allocator.sweep.run import proxy_sensitivity

    return float(proxy_sensitivity(workload, [(wbits, abits)])["sensitivity"].sum())


def unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct row, which distinct row each row is) of an int64 matrix.

    Rows are hashed to one uint64 each (sorting 1-D keys is ~10x faster than ``np.unique(axis=0)``); the
    rows that share a hash are then compared in full, and on a collision the exact ``np.unique`` decides.
    """
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        digest = np.full(len(keys), np.uint64(0xCBF29CE484222325))
        for column in keys.T:
            digest = (digest ^ column.view(np.uint64)) * np.uint64(0x100000001B3)
            digest ^= digest >> np.uint64(29)
    _, first, inverse = np.unique(digest, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not (keys[first][inverse] == keys).all():
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return first, inverse


@lru_cache(maxsize=1024)
def _lanes(pe: str, wbits: int, abits: int) -> int:
    return macs_per_pe(pe, wbits, abits)


def simulate_columns(
    workloads: Mapping[str, Workload], targets: Mapping[str, Target], columns: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Uniform-bit simulation of every point in ``columns`` (DesignPoint fields as arrays).

    Returns result columns: cycles, compute_cycles, stall_cycles (cycles), latency_ms (ms), fits, macs, the
    resources, ``omega`` (Σ proxy Ω of the uniform bits, see ``_proxy_omega``) and ``error`` (the simulator's
    one-line message for a point it rejects, else "").
    """
    n = len(columns["model"])
    models = columns["model"].tolist()
    # the batched path has the legacy timing (no fused nonlinear units, no fold pipelining); other designs are
    # simulated one by one with sim.simulate
    exact = np.array([_batchable(targets[ref]) for ref in columns["target"].tolist()], dtype=bool)
    if not exact.all():
        return _mixed(workloads, targets, columns, exact)
    refs = columns["target"].tolist()
    wbits = np.asarray(columns["wbits"], dtype=np.int64)
    abits = np.asarray(columns["abits"], dtype=np.int64)
    rows = np.asarray(columns["rows"], dtype=np.int64)
    cols = np.asarray(columns["cols"], dtype=np.int64)
    clock = np.asarray(columns["clock_mhz"], dtype=np.float64)
    bandwidth = np.asarray(columns["bandwidth_gbps"], dtype=np.float64)
    buffers = np.stack([np.asarray(columns[f"{b}_bytes"], dtype=np.int64) for b in ("ifmap", "filter", "ofmap")], 1)
    dataflow = columns["dataflow"].tolist()
    codes = np.array([DATAFLOW_CODES[d] for d in dataflow], dtype=np.int64)
    # the same expression as Target.bytes_per_cycle, so the kernel sees the same float
    bytes_per_cycle = bandwidth * 1e9 / (clock * 1e6)

    out: dict[str, np.ndarray] = {
        "cycles": np.zeros(n, dtype=np.int64),
        "compute_cycles": np.zeros(n, dtype=np.int64),
        "stall_cycles": np.zeros(n, dtype=np.int64),
        "latency_ms": np.full(n, np.nan),
        "fits": np.zeros(n, dtype=bool),
        "macs": np.zeros(n, dtype=np.int64),
        "omega": np.full(n, np.nan),
        "energy_mj": np.full(n, np.nan),
        **{name: np.full(n, np.nan) for name in RESOURCES},
    }
    errors = np.full(n, "", dtype=object)
    lanes = np.zeros(n, dtype=np.int64)
    ref_names = list(dict.fromkeys(refs))
    ref_index = (
        np.array([ref_names.index(r) for r in refs], dtype=np.int64) if len(ref_names) > 1 else np.zeros(n, np.int64)
    )
    first, inverse = unique_rows(np.stack([ref_index, wbits, abits], 1))
    for u, i in enumerate(first.tolist()):
        ref, w, a = refs[i], int(wbits[i]), int(abits[i])
        members = inverse == u
        acc = targets[ref].accelerator
        if w not in acc.weight_bits or a not in acc.act_bits:
            errors[members] = (
                f"layer: wbits={w}, abits={a} not supported by target {targets[ref].name!r} "
                f"(weight bits {list(acc.weight_bits)}, activation bits {list(acc.act_bits)})"
            )
            continue
        try:
            lanes[members] = _lanes(acc.pe, w, a)
        except InputError as exc:
            errors[members] = str(exc).splitlines()[0]

    for model in dict.fromkeys(models):
        workload = workloads[model]
        of_model = np.array([m == model for m in models]) & (errors == "")
        if not of_model.any():
            continue
        try:
            shapes, multiplicity = _shapes(workload)
        except InputError as exc:
            errors[of_model] = str(exc).splitlines()[0]
            continue
        idx = np.flatnonzero(of_model)
        s = len(shapes)
        # one row per (point, distinct shape): dataflow, rows, cols, lanes, m, n, k, count, abits, wbits, out bits,
        # buffers — outputs are written back at the activation bits, as sim.simulate does
        per_point = np.stack([codes[idx], rows[idx], cols[idx], lanes[idx]], 1)
        configs = np.concatenate(
            [
                np.repeat(per_point, s, axis=0),
                np.tile(shapes, (len(idx), 1)),
                np.repeat(np.stack([abits[idx], wbits[idx], abits[idx]], 1), s, axis=0),
                np.repeat(buffers[idx], s, axis=0),
            ],
            axis=1,
        )
        bpc = np.repeat(bytes_per_cycle[idx], s)
        # the target is part of the key: its energy model prices the row
        keys = np.concatenate([configs, bpc.view(np.int64)[:, None], np.repeat(ref_index[idx], s)[:, None]], axis=1)
        first, inverse = unique_rows(keys)
        costs = gemm_costs(configs[first], bpc[first])
        per = costs[inverse].reshape(len(idx), s, 4)
        out["energy_mj"][idx] = _energy_mj(workload, targets, refs, idx, configs, first, inverse, costs, shapes)
        compute = (per[:, :, 0] * multiplicity).sum(axis=1)
        total = (per[:, :, 1] * multiplicity).sum(axis=1)
        from sim.simulate import vector_cycles

        per_target = {ref: int(vector_cycles(workload, targets[ref])) for ref in dict.fromkeys(refs[i] for i in idx)}
        vector = np.array([per_target[refs[i]] for i in idx], dtype=np.int64)
        cycles = total + vector
        out["cycles"][idx] = cycles
        out["compute_cycles"][idx] = compute + vector
        out["stall_cycles"][idx] = total - compute
        out["latency_ms"][idx] = cycles / (clock[idx] * 1e3)
        out["macs"][idx] = int(workload.macs)
        pairs = np.stack([wbits[idx], abits[idx]], 1)
        first, inverse = unique_rows(pairs)
        omega = np.array([_proxy_omega(workload, int(w), int(a)) for w, a in pairs[first].tolist()])
        out["omega"][idx] = omega[inverse]
        stamps = {ref: repr(targets[ref]) for ref in per_target}
        design = np.concatenate(
            [np.stack([ref_index[idx], rows[idx], cols[idx], codes[idx], wbits[idx], abits[idx]], 1), buffers[idx]], 1
        )
        first, inverse = unique_rows(design)
        for u, i in enumerate(idx[first].tolist()):
            members = idx[inverse == u]
            ref = refs[i]
            try:
                resources = _resources(
                    targets[ref], stamps[ref], int(rows[i]), int(cols[i]), dataflow[i],
                    tuple(buffers[i].tolist()), (int(wbits[i]), int(abits[i])),
                )  # fmt: skip
            except InputError as exc:
                errors[members] = str(exc).splitlines()[0]
                continue
            for name, value in zip(RESOURCES, resources[:-1], strict=True):
                out[name][members] = value
            out["fits"][members] = resources[-1]
    failed = errors != ""
    out["cycles"][failed] = 0
    out["latency_ms"][failed] = np.nan
    out["error"] = errors
    return out
