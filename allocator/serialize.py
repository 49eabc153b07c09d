"""One rule for turning results into JSON, shared by the pipeline, sweeps and the CLI."""

from __future__ import annotations

from typing import Any

__all__ = ["json_default"]


def json_default(value: Any) -> Any:
    """``json.dump``'s ``default`` for numpy scalars and arrays."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
