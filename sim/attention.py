"""Attention engines: the attention matmuls (q·kᵀ and attn·v) on a datapath of their own, as HLS designs build it.

Many FPGA ViT accelerators do not run the attention matmuls on the GEMM array that runs the weight layers. They
give them an engine of their own that streams the keys (or values) of one head past a block of queries, e.g.
Edge-MoE's and UbiMoE's attention kernels (``compute_q_matmul_k`` / ``compute_attn_matmul_v``: a loop pipelined
at one iteration per cycle over query blocks × keys × head-dim blocks, unrolled over ``ATTN_MATMUL_PARALLEL``
queries and ``FEATURE_BLOCK_SIZE`` dims). A target with an ``[accelerator.attention]`` table runs every
``attn_qk`` / ``attn_av`` GEMM of the workload there; all other GEMMs stay on the array.

Timing of one attention GEMM node (``count`` heads × windows, each M×K · K×N), an engine of ``queries`` (Q) query
rows and ``dims`` (D) head-dim elements per cycle, one loop iteration per cycle::

    q·kᵀ  (M queries, K = head dim, N keys):    count · ⌈M/Q⌉ · N · ⌈K/D⌉ iterations
    attn·v (M queries, K keys, N = head dim):   count · ⌈M/Q⌉ · K · ⌈N/D⌉ iterations

plus ``pipeline_depth`` cycles once per node (the loop's fill). Each iteration does Q·D MACs, so the engine has
Q·D multipliers. The operands are streamed in and the outputs out at the rate the loop consumes them, and with
finite memory a node takes at least as long as its DRAM traffic takes (⌈bytes / bytes per cycle⌉, at the target's
bandwidth or the engine's own ``port_bytes_per_cycle`` when that is narrower). The node reads its left operand
(queries, or attention weights) once and writes its output once; it reads its right operand (keys, or values) once
when the engine keeps it on chip, or once per block of Q queries when it does not (``reread``: Edge-MoE streams a
256-bit block of K or V from DRAM in every loop iteration). Words are stored at the engine's ``multiplier_bits``
when it has them, else at the array's stored widths (sim/simulate.py ``_stored_bits``). Fused operators after the
node (softmax after q·kᵀ) receive its output in ``count · ⌈M/Q⌉`` row blocks (sim/kernels.py ``_chain_tail``).

Resources (sim/resources.py): Q·D multipliers with the array's DSP rule (``multiplier_bits`` of their own, else
the array's), an adder and an accumulator register per multiplier, and ``buffer_kib`` of key/value buffer in
BRAM36.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ATTENTION_KINDS", "AttentionEngine", "attention_bytes", "attention_iterations"]

#: Workload GEMM kinds that run on the attention engine when a target has one.
ATTENTION_KINDS: frozenset[str] = frozenset({"attn_qk", "attn_av"})


@dataclass(frozen=True)
class AttentionEngine:
    """An engine for the attention matmuls: ``queries`` × ``dims`` MACs per cycle (see the module docstring)."""

    queries: int
    dims: int
    pipeline_depth: int = 0  # cycles, once per attention GEMM node
    multiplier_bits: tuple[int, int] | None = None  # (right-, left-operand) bits; None: the array's
    buffer_kib: float = 0.0  # on-chip key/value buffer, KiB (BRAM36)
    reread: bool = False  # the right operand (K or V) is read from DRAM again for every block of queries
    port_bytes_per_cycle: float | None = None  # the engine's own DRAM stream width; None: the target's bandwidth

    @property
    def macs_per_cycle(self) -> int:
        return self.queries * self.dims


def attention_iterations(kind: str, m: int, n: int, k: int, count: int, queries: int, dims: int) -> int:
    """Pipelined loop iterations (cycles at one per cycle) of one attention GEMM node on a Q×D engine."""
    if kind == "attn_qk":
        tokens, head_dim = n, k
    elif kind == "attn_av":
        tokens, head_dim = k, n
    else:
        raise ValueError(f"not an attention matmul kind: {kind!r}")
    return count * -(-m // queries) * tokens * -(-head_dim // dims)


def attention_bytes(
    m: int, n: int, k: int, count: int, left_bits: int, right_bits: int, engine: AttentionEngine
) -> tuple[int, int]:
    """(bytes read, bytes written) of one attention GEMM node (``count`` × M×K · K×N) on ``engine``: the left
    operand once, the right operand once or (``reread``) once per block of ``queries`` rows, the output once at
    ``left_bits``; words packed densely."""
    right_reads = -(-m // engine.queries) if engine.reread else 1
    read = count * (-(-m * k * left_bits // 8) + right_reads * -(-k * n * right_bits // 8))
    written = count * -(-m * n * left_bits // 8)
    return read, written
