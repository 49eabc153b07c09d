"""Cycle-level simulator of a mixed-bit systolic array and an FPGA resource model. Knows nothing of torch."""

from sim.errors import InputError
from sim.target import Target, list_targets, load_target
from sim.workload import Gemm, VectorOp, Workload

__all__ = ["Gemm", "InputError", "Target", "VectorOp", "Workload", "list_targets", "load_target"]
