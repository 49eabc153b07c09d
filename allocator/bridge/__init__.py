"""The bridge from a torch model to a ``sim.Workload``: trace the forward pass, name every GEMM and vector op."""

from allocator.bridge.workload import workload_from_model

__all__ = ["workload_from_model"]
