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

from sim.batch import DATAFLOW_CODES, fused_gemm_costs, gemm_shapes
from sim.errors import InputError
from sim.pe import macs_per_pe
from sim.target import PER_LAYER, Target
from sim.workload import Workload

__all__ = ["RESOURCES", "simulate_columns"]

RESOURCES = ("dsp", "lut", "ff", "bram36", "uram")


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


def _energy_mj(
    workload: Workload,
    target: Target,
    configs: np.ndarray,
    costs: np.ndarray,
    inverse: np.ndarray,
    points: int,
    shapes: np.ndarray,
) -> np.ndarray:
    """Dynamic energy (mJ) of each of ``points`` points on one target, summed over the workload's operators in
    order as ``sim.simulate`` does (so the float sum is the same): a GEMM's from its row's simulated DRAM bytes
    (``configs``/``costs``: the distinct rows, ``inverse``: each (point, shape) row's distinct row), a vector
    operator's fixed."""
    from sim.energy import PJ_PER_MJ, energy_model
    from sim.simulate import _fusion, _shape_energy_mj, _vector_energy_pj
    from sim.workload import Gemm

    names = {code: name for name, code in DATAFLOW_CODES.items()}
    model = energy_model(target)
    requant = bool(target.accelerator.nonlinear.configured)
    # a row's energy depends on its array, shape, bits and DRAM bytes, not on its buffers or bandwidth as such:
    # rows that differ only there (a clock or bandwidth axis) are priced once
    keys = np.concatenate([configs[:, :10], (costs[:, 2] + costs[:, 3])[:, None]], axis=1)
    first, energy_of_row = unique_rows(keys)
    unique_energy = np.empty(len(first))
    for u, key in enumerate(keys[first].tolist()):
        dataflow, rows, cols, _, m, n, k, count, abits, wbits, dram = key
        unique_energy[u] = _shape_energy_mj(
            model, names[dataflow], rows, cols, m, n, k, count, (wbits, abits), dram, requant
        )
    per_shape = unique_energy[energy_of_row][inverse].reshape(points, len(shapes))
    position = {tuple(shape): j for j, shape in enumerate(shapes.tolist())}
    chain_id = _fusion(workload, target).chain_id
    columns = []
    for op in workload.ops:
        if isinstance(op, Gemm):
            columns.append(per_shape[:, position[(op.m, op.n, op.k, op.count, chain_id[op.name])]])
        else:
            columns.append(np.full(points, _vector_energy_pj(op, model.lane_op_pj) / PJ_PER_MJ))
    if not columns:
        return np.zeros(points)
    stacked = np.concatenate([np.zeros((points, 1)), np.stack(columns, axis=1)], axis=1)
    return np.add.accumulate(stacked, axis=1)[:, -1]  # left to right, as Python's sum over the layers


def _proxy_omega(workload: Workload, wbits: int, abits: int) -> float:
    """Σ Ω of the uniform plan under the size-based proxy (``run.proxy_sensitivity``): the accuracy axis of a
    simulation sweep's Pareto front."""
    from allocator.sweep.run import proxy_sensitivity

    return float(proxy_sensitivity(workload, [(wbits, abits)])["sensitivity"].sum())


def _with_exact(
    workloads: Mapping[str, Workload],
    targets: Mapping[str, Target],
    columns: Mapping[str, np.ndarray],
    exact: np.ndarray,
) -> dict[str, np.ndarray]:
    """Batched rows for the points not in ``exact``, ``run.simulate_point`` for those in it, in the given order."""
    from allocator.sweep.grid import FIELDS, _scalar
    from allocator.sweep.run import DesignPoint, configure_target, simulate_point

    n = len(exact)
    batched = simulate_columns(workloads, targets, {k: v[~exact] for k, v in columns.items()})
    # an exact point the simulator rejects keeps what a rejected batched point has: 0 cycles, NaN costs
    fill = {"f": np.nan, "i": 0, "b": False, "O": ""}
    out = {name: np.full(n, fill[values.dtype.kind], dtype=values.dtype) for name, values in batched.items()}
    for name, values in batched.items():
        out[name][~exact] = values
    for i in np.flatnonzero(exact).tolist():
        point = DesignPoint(**{name: _scalar(columns[name][i]) for name in FIELDS})
        try:
            row = simulate_point(workloads[point.model], configure_target(targets[point.target], point), point)
            row["omega"] = _proxy_omega(workloads[point.model], point.wbits, point.abits)
            row["error"] = ""
        except InputError as exc:
            row = {"error": str(exc).splitlines()[0]}
        for name, value in row.items():
            out[name][i] = value
    return out


def _simulate_group(
    workload: Workload,
    target: Target,
    idx: np.ndarray,
    out: dict[str, np.ndarray],
    errors: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    lanes: np.ndarray,
    wbits: np.ndarray,
    abits: np.ndarray,
    buffers: np.ndarray,
    bytes_per_cycle: np.ndarray,
    clock: np.ndarray,
    dataflow: list[str],
) -> None:
    """Fill ``out``'s rows ``idx`` (points of one model on one target) as ``sim.simulate`` would, point for point."""
    from sim.simulate import vector_cycles

    try:
        shapes, multiplicity = gemm_shapes(workload, target)
        vector = int(vector_cycles(workload, target))
    except InputError as exc:
        errors[idx] = str(exc).splitlines()[0]
        return
    s = len(shapes)
    # one row per (point, distinct GEMM): dataflow, rows, cols, lanes, m, n, k, count, abits, wbits, out bits,
    # buffers — outputs are written back at the activation bits, as sim.simulate does
    per_point = np.stack([codes[idx], rows[idx], cols[idx], lanes[idx]], 1)
    configs = np.concatenate(
        [
            np.repeat(per_point, s, axis=0),
            np.tile(shapes[:, :4], (len(idx), 1)),
            np.repeat(np.stack([abits[idx], wbits[idx], abits[idx]], 1), s, axis=0),
            np.repeat(buffers[idx], s, axis=0),
        ],
        axis=1,
    )
    bpc = np.repeat(bytes_per_cycle[idx], s)
    chains = np.tile(shapes[:, 4], len(idx))
    first, inverse = unique_rows(np.concatenate([configs, bpc.view(np.int64)[:, None], chains[:, None]], axis=1))
    costs = fused_gemm_costs(configs[first], bpc[first], chains[first], workload, target)
    per = costs[inverse].reshape(len(idx), s, 5)
    out["energy_mj"][idx] = _energy_mj(workload, target, configs[first], costs, inverse, len(idx), shapes)
    compute = (per[:, :, 0] * multiplicity).sum(axis=1)
    total = (per[:, :, 1] * multiplicity).sum(axis=1)
    fused = (per[:, :, 4] * multiplicity).sum(axis=1)
    cycles = total + fused + vector
    out["cycles"][idx] = cycles
    out["compute_cycles"][idx] = compute + vector
    out["stall_cycles"][idx] = total - compute
    out["latency_ms"][idx] = cycles / (clock[idx] * 1e3)
    out["macs"][idx] = int(workload.macs)
    pairs = np.stack([wbits[idx], abits[idx]], 1)
    first, inverse = unique_rows(pairs)
    omega = np.array([_proxy_omega(workload, int(w), int(a)) for w, a in pairs[first].tolist()])
    out["omega"][idx] = omega[inverse]
    stamp = repr(target)
    design = np.concatenate([np.stack([rows[idx], cols[idx], codes[idx], wbits[idx], abits[idx]], 1), buffers[idx]], 1)
    first, inverse = unique_rows(design)
    for u, i in enumerate(idx[first].tolist()):
        members = idx[inverse == u]
        try:
            resources = _resources(
                target, stamp, int(rows[i]), int(cols[i]), dataflow[i], tuple(buffers[i].tolist()),
                (int(wbits[i]), int(abits[i])),
            )  # fmt: skip
        except InputError as exc:
            errors[members] = str(exc).splitlines()[0]
            continue
        for name, value in zip(RESOURCES, resources[:-1], strict=True):
            out[name][members] = value
        out["fits"][members] = resources[-1]


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
    models = np.asarray(columns["model"], dtype=object)
    refs = columns["target"].tolist()
    wbits = np.asarray(columns["wbits"], dtype=np.int64)
    abits = np.asarray(columns["abits"], dtype=np.int64)
    rows = np.asarray(columns["rows"], dtype=np.int64)
    cols = np.asarray(columns["cols"], dtype=np.int64)
    clock = np.asarray(columns["clock_mhz"], dtype=np.float64)
    bandwidth = np.asarray(columns["bandwidth_gbps"], dtype=np.float64)
    buffers = np.stack([np.asarray(columns[f"{b}_bytes"], dtype=np.int64) for b in ("ifmap", "filter", "ofmap")], 1)
    dataflow = columns["dataflow"].tolist()
    # arrays that switch dataflow per layer, targets with an attention engine (sim/attention.py) or further GEMM
    # engines, and targets whose int8 PEs stand for wider multipliers (their operands' stored bits): one
    # simulate() per point
    engine = {
        ref: targets[ref].accelerator.attention is not None
        or targets[ref].accelerator.multiplier_bits is not None
        or bool(targets[ref].accelerator.engines)
        for ref in set(refs)
    }
    exact = np.array([d == PER_LAYER or engine[ref] for d, ref in zip(dataflow, refs, strict=True)], dtype=bool)
    if exact.any():
        return _with_exact(workloads, targets, columns, exact)
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

    # one group per (model, target): the target's units decide which GEMMs carry fused operators
    for model in dict.fromkeys(models.tolist()):
        workload = workloads[model]
        for r, ref in enumerate(ref_names):
            idx = np.flatnonzero((models == model) & (ref_index == r) & (errors == ""))
            if len(idx):
                _simulate_group(workload, targets[ref], idx, out, errors, codes, rows, cols, lanes, wbits, abits,
                                buffers, bytes_per_cycle, clock, dataflow)  # fmt: skip
    failed = errors != ""
    out["cycles"][failed] = 0
    out["latency_ms"][failed] = np.nan
    out["error"] = errors
    return out
