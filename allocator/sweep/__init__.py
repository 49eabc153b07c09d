"""Design-space sweeps on Dask: a sweep file expands to design points, each simulated (and optionally allocated),
stored as a resumable parquet dataset. Torch-free.

The package's public names are exactly ``allocator.sweep.run``'s (one list, kept there)."""

from allocator.sweep.run import *  # noqa: F403  (re-exports run.__all__, the one list of these names)
from allocator.sweep.run import __all__ as __all__
