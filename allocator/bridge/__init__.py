"""Where sim and quant meet: a torch model traced to a ``sim.Workload`` (every GEMM and vector op named), and
bit-plan files read once into quant's ``BitPlan``, and the accumulator widths a target's PE model gives
the integer model."""

from allocator.bridge.plan import read_bit_plan
from allocator.bridge.widths import datapath_widths
from allocator.bridge.workload import workload_from_model

__all__ = ["datapath_widths", "read_bit_plan", "workload_from_model"]
