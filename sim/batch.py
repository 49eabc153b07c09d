"""Many GEMMs on many designs in one jitted call: the simulator's entry point for design-space sweeps.

``simulate`` runs one workload on one design; a sweep asks for the same few GEMM shapes on thousands of
designs. ``gemm_costs`` takes one row per (GEMM, design) — each row carries its own array, buffers and
bandwidth — and runs the same timing model as ``simulate`` (sim/kernels.py ``_gemm_cycles``) over all of them
in one call, so the Python cost per design point is a few array operations instead of a ``simulate`` call.
"""

from __future__ import annotations

import numpy as np

from sim import kernels
from sim.errors import InputError

__all__ = ["CONFIG_COLUMNS", "DATAFLOW_CODES", "gemm_costs"]

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
    configs = np.ascontiguousarray(configs, dtype=np.int64)
    bytes_per_cycle = np.ascontiguousarray(bytes_per_cycle, dtype=np.float64)
    if configs.ndim != 2 or configs.shape[1] != len(CONFIG_COLUMNS):
        raise InputError(f"gemm_costs: configs must have shape (n, {len(CONFIG_COLUMNS)}), got {configs.shape}")
    if bytes_per_cycle.shape != (configs.shape[0],):
        raise InputError(f"gemm_costs: bytes_per_cycle must have shape ({configs.shape[0]},)")
    if len(configs) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if not np.isin(configs[:, 0], list(DATAFLOW_CODES.values())).all():
        raise InputError("gemm_costs: unknown dataflow code")
    if (configs[:, 1:11] <= 0).any():
        row, col = np.argwhere(configs[:, 1:11] <= 0)[0]
        raise InputError(f"gemm_costs: row {row}: {CONFIG_COLUMNS[col + 1]}={configs[row, col + 1]}; must be > 0")
    if (configs[:, 11:] < 0).any() or not (np.isfinite(bytes_per_cycle) & (bytes_per_cycle > 0)).all():
        raise InputError("gemm_costs: buffer bytes must be >= 0 and bytes_per_cycle finite and > 0")
    return kernels._gemm_cycles_rows(configs, bytes_per_cycle)
