"""Workloads more than one test file runs on (tests/sim and tests/allocator), defined once."""

from __future__ import annotations

from sim.workload import Gemm, VectorOp, Workload

__all__ = ["mixed_dataflow_workload"]


def mixed_dataflow_workload() -> Workload:
    """Shapes whose best dataflows differ: a tall-skinny GEMM, a wide one, a deep one (and a vector op)."""
    return Workload.from_ops(
        "mixed",
        [
            Gemm("tall", "qkv", 400, 8, 16, weight_params=128),
            VectorOp("gelu", "gelu", 400 * 8),
            Gemm("wide", "fc1", 8, 400, 16, weight_params=6400),
            Gemm("deep", "fc2", 16, 16, 600, weight_params=9600),
        ],
    )
