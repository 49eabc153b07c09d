"""Design-space sweeps on Dask: a sweep file expands to design points, each simulated (and optionally allocated),
stored as a resumable parquet dataset. Torch-free."""

from allocator.sweep.run import (
    DesignPoint,
    SweepSpec,
    SweepSummary,
    allocate_point,
    configure_target,
    finished_ids,
    load_sweep,
    proxy_sensitivity,
    read_results,
    run_sweep,
    simulate_point,
)

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
