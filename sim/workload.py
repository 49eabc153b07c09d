"""Workloads: the operators of one inference as a networkx DiGraph in execution order.

A GEMM multiplies an M×K activation by a K×N operand (a weight, or a second activation for attention
matmuls) into M×N. Vector operators (softmax, GELU, LayerNorm, residual add, requantization) carry an
element count. ``sim`` knows nothing of torch: ``allocator.workload_from_model`` builds these from models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import networkx as nx

__all__ = ["Gemm", "MixtureOfExperts", "VectorOp", "Workload", "conv_output_size"]

#: Digits a topology file's GEMM dimension may have: 10^12 is far past any layer, and a longer number (a
#: 5,000-digit one would stop int() with Python's digit limit) is refused before it is parsed.
MAX_DIM_DIGITS = 12

GemmKind = Literal["patch_embed", "qkv", "attn_qk", "attn_av", "proj", "fc1", "fc2", "head", "patch_merge", "gemm"]
VectorKind = Literal["softmax", "gelu", "layernorm", "add", "requant"]


@dataclass(frozen=True)
class Gemm:
    """(M×K) · (K×N) → (M×N), repeated ``count`` times back to back (e.g. once per attention head).

    ``weight_params`` is the number of weight parameters (0 when both operands are activations; biases are
    not counted). ``b_is_weight`` says whether the K×N operand is a weight (else an activation, as in q·kᵀ).
    Attention matmuls from ``allocator.workload_from_model`` are one node per attention call with the
    per-head GEMMs batched: ``count`` = heads (× windows for Swin), M, N, K per head and window.
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
    """An elementwise or row-wise operator on the vector unit, over ``elements`` values.

    ``row`` is the length of the rows a row-wise operator (softmax, LayerNorm) normalises over (elements; 0 when
    unknown or elementwise); a unit whose row buffer is shorter makes two passes (sim/nonlinear.py).
    """

    name: str
    kind: VectorKind
    elements: int
    row: int = 0


Operator = Gemm | VectorOp


@dataclass(frozen=True)
class MixtureOfExperts:
    """Blocks whose MLP is a mixture of experts, as M3ViT builds them (Liang et al., NeurIPS 2022): every
    ``every``-th block from block ``first`` routes each token to ``experts_per_token`` of ``experts`` MLPs of hidden
    width ``hidden``. ``Workload.with_experts`` runs the experts one after another, each over its share of the
    token slots (tokens × experts_per_token spread evenly: an assumption, routing depends on the image), so each
    expert's weights are loaded once per block, as an accelerator that reorders tokens by expert loads them."""

    experts: int
    experts_per_token: int
    hidden: int
    every: int = 2
    first: int = 1


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
            if op.name != node:
                raise InputError(f"workload {name!r}: node {node!r} holds operator {op.name!r}; names must match")
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

    @classmethod
    def from_gemm(cls, m: int, n: int, k: int, name: str | None = None) -> Workload:
        """One GEMM of an M×K activation by a K×N weight (``mixbit simulate --gemm M,N,K``)."""
        from sim.errors import InputError

        for dim, value in (("M", m), ("N", n), ("K", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"GEMM {dim}={value!r}; M, N and K must be positive integers")
        label = name or f"gemm_{m}x{n}x{k}"
        return cls.from_ops(label, [Gemm(label, "gemm", m, n, k, b_is_weight=True, weight_params=k * n)])

    @classmethod
    def from_topology_csv(cls, path: str | PathLike[str]) -> Workload:
        """Read a SCALE-Sim topology CSV, in its GEMM format or its convolution format.

        GEMM format: a header row, then one ``name, M, N, K,`` row per GEMM. Each row is an M×K by K×N GEMM
        whose K×N operand is taken as a weight (SCALE-Sim's filter), kind ``"gemm"``, chained in file order.
        Rows named ``X[0]``, ``X[1]``, … ``X[c-1]`` in a row with equal dimensions (what ``to_topology_csv``
        writes for a GEMM with ``count`` = c) fold back into one GEMM ``X`` with ``count`` = c.

        Convolution format (most of SCALE-Sim's shipped topologies): ``Layer name, IFMAP Height, IFMAP Width,
        Filter Height, Filter Width, Channels, Num Filter, Strides,`` (a ninth column gives the width stride
        separately). Each layer becomes SCALE-Sim's own im2col GEMM: M = output pixels with its output-size
        rule ⌈(ifmap − filter + stride) / stride⌉ per dimension (no padding: the IFMAP sizes in those files
        include it), K = filter height × filter width × channels, N = filters.

        The trailing comma is optional; blank lines are skipped; the header row decides the format.
        """
        from sim.errors import InputError
        from sim.schema import read_text

        path = Path(path)
        rows: list[tuple[int, str, list[str]]] = []  # line number, name, numeric fields
        header: list[str] | None = None
        for lineno, raw in enumerate(read_text(path, "topology").splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            fields = [field.strip() for field in line.split(",")]
            if fields[-1] == "" and len(fields) > 1:
                fields = fields[:-1]  # SCALE-Sim's trailing comma
            where = f"{path}:{lineno}"
            if header is None:
                header = fields
                if len(fields) in (4, 8, 9) and all(re.fullmatch(r"[+-]?\d+", f) for f in fields[1:]):
                    raise InputError(
                        f"{where}: first row looks like data; expected a header row 'Layer, M, N, K,' or "
                        "'Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                        "Num Filter, Strides,'"
                    )
                if len(fields) not in (4, 8, 9):
                    raise InputError(
                        f"{where}: header has {len(fields)} columns; expected 4 (GEMM: 'Layer, M, N, K,') or "
                        "8 (convolution: 'Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                        "Channels, Num Filter, Strides,')"
                    )
                continue
            if len(fields) != len(header):
                expected = "'name, M, N, K,'" if len(header) == 4 else "as the convolution header"
                raise InputError(f"{where}: expected {len(header)} columns {expected} but found {len(fields)}")
            if not fields[0]:
                raise InputError(f"{where}: empty layer name")
            rows.append((lineno, fields[0], fields[1:]))
        if header is None:
            raise InputError(f"{path}: empty topology file; expected a header row 'Layer, M, N, K,' and GEMM rows")
        if not rows:
            raise InputError(
                f"{path}: topology file has a header but no {'GEMM' if len(header) == 4 else 'layer'} rows"
            )
        if len(header) == 4:
            gemm_rows = [(lineno, name, *_integers(path, lineno, name, "MNK", values)) for lineno, name, values in rows]
        else:
            gemm_rows = [_conv_gemm(path, lineno, name, values) for lineno, name, values in rows]
        gemms: list[Gemm] = []
        first_line: dict[str, int] = {}
        i = 0
        while i < len(gemm_rows):
            lineno, name, m, n, k = gemm_rows[i]
            base, index = _split_count_suffix(name)
            count = 1
            if index == 0:  # a run name[0], name[1], ... of equal GEMMs is one GEMM repeated
                while i + count < len(gemm_rows) and gemm_rows[i + count][1:] == (f"{base}[{count}]", m, n, k):
                    count += 1
            label = base if count > 1 else name
            if label in first_line:
                raise InputError(f"{path}:{lineno}: layer name {label!r} already used on line {first_line[label]}")
            first_line[label] = lineno
            gemms.append(Gemm(label, "gemm", m, n, k, b_is_weight=True, weight_params=k * n * count, count=count))
            i += count
        return cls.from_ops(path.stem, gemms)

    def to_topology_csv(self, path: str | PathLike[str]) -> Path:
        """Write the GEMMs (vector ops have no place in the format) as a SCALE-Sim GEMM topology CSV.

        A GEMM with ``count`` = c > 1 (attention heads × windows) becomes c rows ``name[0]`` … ``name[c-1]``,
        since SCALE-Sim runs each row once; ``from_topology_csv`` folds them back. Returns the path.
        """
        path = Path(path)
        lines = ["Layer, M, N, K,"]
        for gemm in self.gemms:
            names = [gemm.name] if gemm.count == 1 else [f"{gemm.name}[{i}]" for i in range(gemm.count)]
            lines.extend(f"{name}, {gemm.m}, {gemm.n}, {gemm.k}," for name in names)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def with_experts(self, moe: MixtureOfExperts) -> Workload:
        """This workload with the MLP (``blocks.<i>.mlp.fc1``, ``.act``, ``.fc2``) of every block ``moe`` names
        replaced by its experts, in a chain ``…experts.<e>.fc1 → .act → .fc2…`` between the MLP's input and output
        (see ``MixtureOfExperts``); an expert given no token slots is left out."""
        from sim.errors import InputError

        for field in ("experts", "experts_per_token", "hidden", "every"):
            if getattr(moe, field) <= 0:
                raise InputError(f"mixture of experts: {field} must be positive, got {getattr(moe, field)}")
        if moe.first < 0 or moe.experts_per_token > moe.experts:
            raise InputError(f"mixture of experts: first block >= 0 and experts_per_token <= experts, got {moe}")
        graph = self.graph
        ops: list[Operator] = []
        edges = [(u, v) for u, v in graph.edges]
        # the MLP's input now enters its first expert (fc1's name -> it), its output leaves the last (fc2's name -> it)
        rename: dict[str, str] = {}
        gone: set[str] = set()
        for op in self.ops:
            match = re.fullmatch(r"(.*blocks\.(\d+)\.mlp)\.fc1", op.name)
            if not (isinstance(op, Gemm) and match):
                if op.name not in gone:
                    ops.append(op)
                continue
            prefix, index = match.group(1), int(match.group(2))
            act, fc2 = graph.nodes.get(f"{prefix}.act"), graph.nodes.get(f"{prefix}.fc2")
            if index < moe.first or (index - moe.first) % moe.every or act is None or fc2 is None:
                ops.append(op)
                continue
            slots = op.m * op.count * moe.experts_per_token
            chain: list[Operator] = []
            for expert in range(moe.experts):
                tokens = slots // moe.experts + (expert < slots % moe.experts)
                if tokens == 0:
                    continue
                name = f"{prefix}.experts.{expert}"
                dim_in, dim_out = op.k, fc2["op"].n
                chain += [
                    Gemm(f"{name}.fc1", "fc1", tokens, moe.hidden, dim_in, weight_params=dim_in * moe.hidden),
                    VectorOp(f"{name}.act", "gelu", tokens * moe.hidden),
                    Gemm(f"{name}.fc2", "fc2", tokens, dim_out, moe.hidden, weight_params=moe.hidden * dim_out),
                ]
            ops += chain
            edges += list(zip((c.name for c in chain), (c.name for c in chain[1:]), strict=False))
            rename[op.name], rename[f"{prefix}.fc2"] = chain[0].name, chain[-1].name
            gone |= {op.name, f"{prefix}.act", f"{prefix}.fc2"}
        if not rename:
            raise InputError(f"workload {self.name!r}: no MLP (blocks.<i>.mlp.fc1, act, fc2) to turn into experts")
        new = nx.DiGraph()
        for order, op in enumerate(ops):
            new.add_node(op.name, op=op, order=order)
        for u, v in edges:
            if u in gone and v in gone:
                continue  # inside a replaced MLP
            u, v = rename.get(u, u), rename.get(v, v)
            if u in new and v in new:
                new.add_edge(u, v)
        return Workload(self.name, new)

    @property
    def ops(self) -> tuple[Operator, ...]:
        """All operators in execution order."""
        return self._ops

    @property
    def gemms(self) -> tuple[Gemm, ...]:
        """The GEMMs in execution order."""
        gemms = self.__dict__.get("_gemms")
        if gemms is None:
            gemms = self.__dict__["_gemms"] = tuple(op for op in self._ops if isinstance(op, Gemm))
        return gemms

    @property
    def vector_ops(self) -> tuple[VectorOp, ...]:
        """The vector-unit operators in execution order."""
        vector_ops = self.__dict__.get("_vector_ops")
        if vector_ops is None:
            vector_ops = self.__dict__["_vector_ops"] = tuple(op for op in self._ops if isinstance(op, VectorOp))
        return vector_ops

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


_CONV_COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter", "Strides")


def _integers(path: Path, lineno: int, name: str, labels: Sequence[str], values: list[str]) -> list[int]:
    """Positive integers from one row's fields, each error naming the file, line, column and layer."""
    from sim.errors import InputError

    out = []
    for label, text in zip(labels, values, strict=True):
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise InputError(f"{path}:{lineno}: {label}={text!r} in layer {name!r} is not an integer")
        if len(text.lstrip("+-0")) > MAX_DIM_DIGITS:
            raise InputError(f"{path}:{lineno}: {label}={text[:24]}... in layer {name!r} is too large")
        if int(text) <= 0:
            raise InputError(f"{path}:{lineno}: {label}={text} in layer {name!r}; must be > 0")
        out.append(int(text))
    return out


def conv_output_size(ifmap: int, filter_size: int, stride: int) -> int:
    """SCALE-Sim's output size along one dimension: ⌈(ifmap − filter + stride) / stride⌉ (no padding)."""
    return -(-(ifmap - filter_size + stride) // stride)


def _conv_gemm(path: Path, lineno: int, name: str, values: list[str]) -> tuple[int, str, int, int, int]:
    """(line, name, M, N, K) of one convolution row, by SCALE-Sim's im2col mapping."""
    from sim.errors import InputError

    labels = _CONV_COLUMNS if len(values) == 7 else (*_CONV_COLUMNS[:-1], "Stride Height", "Stride Width")
    numbers = _integers(path, lineno, name, labels, values)
    ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride_h = numbers[:7]
    stride_w = numbers[7] if len(numbers) == 8 else stride_h
    for what, ifmap, filt in (("Height", ifmap_h, filter_h), ("Width", ifmap_w, filter_w)):
        if filt > ifmap:
            raise InputError(
                f"{path}:{lineno}: Filter {what}={filt} in layer {name!r} is larger than IFMAP {what}={ifmap}"
            )
    m = conv_output_size(ifmap_h, filter_h, stride_h) * conv_output_size(ifmap_w, filter_w, stride_w)
    return lineno, name, m, filters, filter_h * filter_w * channels


def _split_count_suffix(name: str) -> tuple[str, int | None]:
    """``"x[3]"`` → ``("x", 3)``; a name without an index suffix → ``(name, None)``."""
    match = re.fullmatch(r"(.+)\[(\d+)\]", name)
    return (match.group(1), int(match.group(2))) if match else (name, None)
