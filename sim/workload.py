"""Workloads: the operators of one inference as a networkx DiGraph in execution order.

A GEMM multiplies an M×K activation by a K×N operand (a weight, or a second activation for attention
matmuls) into M×N. Vector operators (softmax, GELU, LayerNorm, residual add, requantization) carry an
element count. ``sim`` knows nothing of torch: ``allocator.workload_from_model`` builds these from models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import networkx as nx

__all__ = ["Gemm", "VectorOp", "Workload"]

GemmKind = Literal["patch_embed", "qkv", "attn_qk", "attn_av", "proj", "fc1", "fc2", "head", "patch_merge", "gemm"]
VectorKind = Literal["softmax", "gelu", "layernorm", "add", "requant"]


@dataclass(frozen=True)
class Gemm:
    """(M×K) · (K×N) → (M×N), repeated ``count`` times back to back (e.g. once per attention head).

    ``weight_params`` is the number of weight parameters (0 when both operands are activations).
    ``b_is_weight`` says whether the K×N operand is a weight (else an activation, as in q·kᵀ).
    """

    name: str
    kind: GemmKind
    m: int
    n: int
    k: int
    b_is_weight: bool = True
    weight_params: int = 0
    count: int = 1

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k * self.count


@dataclass(frozen=True)
class VectorOp:
    """An elementwise or row-wise operator on the vector unit, over ``elements`` values."""

    name: str
    kind: VectorKind
    elements: int


Operator = Gemm | VectorOp


class Workload:
    """Operators of one inference (batch 1) in execution order, as a DiGraph of data dependencies.

    Each node is an operator name with attribute ``op`` (a ``Gemm`` or ``VectorOp``) and ``order`` (its
    position in execution order). Edges say which operator's output feeds which. The graph must be acyclic.
    """

    def __init__(self, name: str, graph: nx.DiGraph) -> None:
        from sim.errors import InputError

        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            raise InputError(f"workload {name!r}: operator graph has a cycle through {cycle[0][0]!r}")
        for node, data in graph.nodes(data=True):
            op = data.get("op")
            if not isinstance(op, Gemm | VectorOp):
                raise InputError(f"workload {name!r}: node {node!r} has no Gemm or VectorOp 'op'")
            if isinstance(op, Gemm):
                for dim in ("m", "n", "k", "count"):
                    if getattr(op, dim) <= 0:
                        raise InputError(f"workload {name!r}: GEMM {node!r} has {dim}={getattr(op, dim)}; must be > 0")
            elif op.elements <= 0:
                raise InputError(f"workload {name!r}: operator {node!r} has elements={op.elements}; must be > 0")
        self.name = name
        self.graph = graph
        self._ops: tuple[Operator, ...] = tuple(
            graph.nodes[n]["op"] for n in sorted(graph.nodes, key=lambda n: (graph.nodes[n].get("order", 0), n))
        )

    @classmethod
    def from_ops(cls, name: str, ops: list[Operator], chain: bool = True) -> Workload:
        """A workload from operators in execution order; ``chain`` links each to the next."""
        graph = nx.DiGraph()
        for order, op in enumerate(ops):
            if op.name in graph:
                from sim.errors import InputError

                raise InputError(f"workload {name!r}: operator name {op.name!r} appears twice")
            graph.add_node(op.name, op=op, order=order)
            if chain and order:
                graph.add_edge(ops[order - 1].name, op.name)
        return cls(name, graph)

    @property
    def ops(self) -> tuple[Operator, ...]:
        """All operators in execution order."""
        return self._ops

    @property
    def gemms(self) -> tuple[Gemm, ...]:
        """The GEMMs in execution order."""
        return tuple(op for op in self._ops if isinstance(op, Gemm))

    @property
    def vector_ops(self) -> tuple[VectorOp, ...]:
        """The vector-unit operators in execution order."""
        return tuple(op for op in self._ops if isinstance(op, VectorOp))

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all GEMMs."""
        return sum(g.macs for g in self.gemms)

    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        return (
            f"Workload({self.name!r}, {len(self.gemms)} GEMMs, {len(self.vector_ops)} vector ops, {self.macs:,} MACs)"
        )
