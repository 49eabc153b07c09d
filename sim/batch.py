"""Many GEMMs on many designs in one jitted call: the simulator's entry point for design-space sweeps.

``simulate`` runs one workload on one design; a sweep asks for the same few GEMM shapes on thousands of
designs. ``gemm_costs`` takes one row per (GEMM, design) — each row carries its own array, buffers and
bandwidth — and runs the same timing model as ``simulate`` (sim/kernels.py ``_gemm_cycles``) over all of them
in one call, so the Python cost per design point is a few array operations instead of a ``simulate`` call.
``fused_gemm_costs`` adds what a target with fold pipelining and fused nonlinear units adds (sim/nonlinear.py):
each row's GEMM also carries the chain of fused operators that follows it in the workload (``gemm_shapes``).
"""

from __future__ import annotations

import numpy as np

from sim import kernels
from sim.errors import InputError
from sim.target import Target
from sim.workload import Workload

__all__ = ["CONFIG_COLUMNS", "DATAFLOW_CODES", "fused_gemm_costs", "gemm_costs", "gemm_shapes"]

DATAFLOW_CODES = {"os": kernels.OS, "ws": kernels.WS, "is": kernels.IS}
CONFIG_COLUMNS = (
    "dataflow", "rows", "cols", "lanes", "m", "n", "k", "count", "act_bits", "weight_bits", "out_bits",
    "ifmap_bytes", "filter_bytes", "ofmap_bytes",
)  # fmt: skip


def gemm_costs(configs: np.ndarray, bytes_per_cycle: np.ndarray) -> np.ndarray:
    """(compute cycles, total cycles, bytes read, bytes written) per row of ``configs``.

    ``configs``: int64 array of shape (n, 14), columns ``CONFIG_COLUMNS`` (dataflow as a ``DATAFLOW_CODES``
    value, sizes in elements, bits, buffer sizes in bytes); ``bytes_per_cycle``: float64 (n,), off-chip bytes
    per accelerator cycle. Each row gives exactly what ``sim.simulate`` gives that GEMM on that design.
    """
    configs, bytes_per_cycle = _checked(configs, bytes_per_cycle)
    if len(configs) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    return kernels._gemm_cycles_rows(configs, bytes_per_cycle)


def gemm_shapes(workload: Workload, target: Target) -> tuple[np.ndarray, np.ndarray]:
    """The distinct GEMMs of ``workload`` on ``target``'s nonlinear units, and how many GEMMs each stands for.

    Rows are (m, n, k, count, chain): ``chain`` numbers the fused operators that follow the GEMM on this target
    (two GEMMs of one shape differ when one feeds a fused GELU and the other does not); int64 arrays.
    """
    from sim.simulate import _fusion

    for gemm in workload.gemms:
        for dim in ("m", "n", "k", "count"):
            if getattr(gemm, dim) <= 0:
                raise InputError(f"GEMM {gemm.name!r} has {dim}={getattr(gemm, dim)}; must be > 0")
    fusion = _fusion(workload, target)
    counts: dict[tuple[int, int, int, int, int], int] = {}
    for gemm in workload.gemms:
        key = (gemm.m, gemm.n, gemm.k, gemm.count, fusion.chain_id[gemm.name])
        counts[key] = counts.get(key, 0) + 1
    shapes = np.array(list(counts), dtype=np.int64).reshape(len(counts), 5)
    return shapes, np.array(list(counts.values()), dtype=np.int64)


def fused_gemm_costs(
    configs: np.ndarray, bytes_per_cycle: np.ndarray, chains: np.ndarray, workload: Workload, target: Target
) -> np.ndarray:
    """(compute, total, bytes read, bytes written, fused cycles) per row, on ``target``'s units and fold timing.

    ``configs`` and ``bytes_per_cycle`` as ``gemm_costs`` takes them (each row its own array, buffers and
    bandwidth; the units, vector lanes and fold pipelining are ``target``'s); ``chains`` the ``chain`` column of
    ``gemm_shapes(workload, target)`` for each row. ``cycles`` of the GEMM as ``sim.simulate`` reports it is total +
    fused cycles.
    """
    from sim.simulate import _fusion

    configs, bytes_per_cycle = _checked(configs, bytes_per_cycle)
    chains = np.ascontiguousarray(chains, dtype=np.int64)
    fusion = _fusion(workload, target)
    if chains.shape != (configs.shape[0],) or ((chains < 0) | (chains >= len(fusion.chain_serial))).any():
        raise InputError(f"fused_gemm_costs: chains must be {configs.shape[0]} chain numbers of gemm_shapes")
    if len(configs) == 0:
        return np.zeros((0, 5), dtype=np.int64)
    return kernels._gemm_fused_rows(
        configs,
        bytes_per_cycle,
        bool(target.accelerator.fold_pipelining),
        chains,
        fusion.chain_ptr,
        fusion.chain_row_wise,
        fusion.chain_serial,
        fusion.stage_elements,
        fusion.stage_factor,
        fusion.stage_depth,
    )


def _checked(configs: np.ndarray, bytes_per_cycle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    configs = np.ascontiguousarray(configs, dtype=np.int64)
    bytes_per_cycle = np.ascontiguousarray(bytes_per_cycle, dtype=np.float64)
    if configs.ndim != 2 or configs.shape[1] != len(CONFIG_COLUMNS):
        raise InputError(f"gemm_costs: configs must have shape (n, {len(CONFIG_COLUMNS)}), got {configs.shape}")
    if bytes_per_cycle.shape != (configs.shape[0],):
        raise InputError(f"gemm_costs: bytes_per_cycle must have shape ({configs.shape[0]},)")
    if len(configs) == 0:
        return configs, bytes_per_cycle
    if not np.isin(configs[:, 0], list(DATAFLOW_CODES.values())).all():
        raise InputError("gemm_costs: unknown dataflow code")
    if (configs[:, 1:11] <= 0).any():
        row, col = np.argwhere(configs[:, 1:11] <= 0)[0]
        raise InputError(f"gemm_costs: row {row}: {CONFIG_COLUMNS[col + 1]}={configs[row, col + 1]}; must be > 0")
    if (configs[:, 11:] < 0).any() or not (np.isfinite(bytes_per_cycle) & (bytes_per_cycle > 0)).all():
        raise InputError("gemm_costs: buffer bytes must be >= 0 and bytes_per_cycle finite and > 0")
    return configs, bytes_per_cycle
