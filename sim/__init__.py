"""Cycle-level simulator of a mixed-bit systolic array and an FPGA resource model. Knows nothing of torch."""

from sim.errors import InputError
from sim.functional import functional_gemm
from sim.patchwise import TokenSplit
from sim.pe import macs_per_pe
from sim.resources import Resources, estimate_resources
from sim.simulate import (
    LayerResult,
    SimResult,
    cost_table,
    simulate,
    token_split_cost_table,
    vector_cycles,
    vector_energy_mj,
)
from sim.target import Target
from sim.target_file import list_targets, load_target
from sim.workload import Gemm, VectorOp, Workload

__all__ = ["Gemm", "InputError", "Target", "VectorOp", "Workload", "list_targets", "load_target"]
__all__ += ["LayerResult", "SimResult", "cost_table", "functional_gemm", "macs_per_pe", "simulate", "vector_cycles"]
__all__ += ["TokenSplit", "token_split_cost_table"]
__all__ += ["Resources", "estimate_resources"]
__all__ += ["vector_energy_mj"]
