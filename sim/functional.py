"""Functional mode: integer operands pushed through the systolic array fold by fold, register by register.

The tie between the timing model and integer inference: the same folds and skews as sim/kernels.py, with
real int codes, and the result equals an exact integer matmul.
"""

from __future__ import annotations

import numpy as np

from sim import kernels
from sim.errors import InputError

__all__ = ["functional_gemm"]

_DATAFLOWS = {"os": kernels.OS, "ws": kernels.WS, "is": kernels.IS}


def functional_gemm(a_codes: np.ndarray, b_codes: np.ndarray, rows: int, cols: int, dataflow: str) -> np.ndarray:
    """A (M×K) · B (K×N) of integer codes on an R×C array in dataflow ``os``/``ws``/``is``; int64 M×N.

    Codes must be integers of at most 32 bits (int8..int32). Accumulation is in int64, exact as long as
    K·max|a|·max|b| < 2^63 (always for int8..int16 codes and K < 2^32; checked here otherwise).
    """
    a = np.asarray(a_codes)
    b = np.asarray(b_codes)
    if a.ndim != 2 or b.ndim != 2:
        raise InputError(f"functional_gemm: operands must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise InputError(f"functional_gemm: inner dimensions differ, A is {a.shape} and B is {b.shape}")
    if 0 in a.shape or 0 in b.shape:
        raise InputError(f"functional_gemm: empty operand, A is {a.shape} and B is {b.shape}")
    for what, x in (("A", a), ("B", b)):
        if not np.issubdtype(x.dtype, np.integer) or x.dtype.itemsize > 4:
            raise InputError(f"functional_gemm: {what} has dtype {x.dtype}; expected int8..int32 codes")
    for what, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"functional_gemm: {what}={value!r}; must be a positive integer")
    if dataflow not in _DATAFLOWS:
        raise InputError(f"functional_gemm: dataflow {dataflow!r}; expected one of os, ws, is")
    a64 = a.astype(np.int64)
    b64 = b.astype(np.int64)
    bound = int(np.abs(a64).max()) * int(np.abs(b64).max()) * a.shape[1]
    if bound >= 2**63:
        raise InputError(f"functional_gemm: int64 accumulator could overflow (K·max|a|·max|b| = {bound})")
    return kernels._functional_gemm(a64, b64, rows, cols, _DATAFLOWS[dataflow])
