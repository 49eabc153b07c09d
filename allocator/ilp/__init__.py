"""The decision: the problem table (one row per layer and bit choice), the ILP over it, Pareto fronts.

Free of torch, so Dask workers that solve per design point never import it.
"""

from allocator.ilp.model import (
    Allocation,
    Choice,
    InfeasibleError,
    Limits,
    ParetoFront,
    Predicted,
    allocate,
    build_model,
    explain_infeasible,
    pareto_front,
    problem_from_json,
)
from allocator.ilp.problem import (
    BRAM36_BITS,
    OPTION_COLUMNS,
    URAM_BITS,
    BitField,
    Problem,
    Tie,
    build_problem,
    onchip_capacity_bits,
)

__all__ = [
    "BRAM36_BITS",
    "OPTION_COLUMNS",
    "URAM_BITS",
    "Allocation",
    "BitField",
    "Choice",
    "InfeasibleError",
    "Limits",
    "ParetoFront",
    "Predicted",
    "Problem",
    "Tie",
    "allocate",
    "build_model",
    "build_problem",
    "explain_infeasible",
    "onchip_capacity_bits",
    "pareto_front",
    "problem_from_json",
]
