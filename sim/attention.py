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
Q·D multipliers. The operands are streamed in and the outputs out at the rate the loop consumes them: the node
reads its two operands once and writes its output once (bytes at the layer's activation bits), and with finite
memory a node takes at least as long as that traffic takes (⌈bytes / bytes per cycle⌉). Fused operators after
the node (softmax after q·kᵀ) receive its output in ``count · ⌈M/Q⌉`` row blocks (sim/kernels.py ``_chain_tail``).

Resources (sim/resources.py): Q·D multipliers with the array's DSP rule (``multiplier_bits`` of their own, else
the array's), an adder and an accumulator register per multiplier, and ``buffer_kib`` of key/value buffer in
BRAM36.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ATTENTION_KINDS", "AttentionEngine", "attention_iterations"]

#: Workload GEMM kinds that run on the attention engine when a target has one.
ATTENTION_KINDS: frozenset[str] = frozenset({"attn_qk", "attn_av"})


@dataclass(frozen=True)
class AttentionEngine:
    """An engine for the attention matmuls: ``queries`` × ``dims`` MACs per cycle (see the module docstring)."""

    queries: int
    dims: int
    pipeline_depth: int = 0  # cycles, once per attention GEMM node
    multiplier_bits: tuple[int, int] | None = None  # (weight-side, activation-side) bits; None: the array's
    buffer_kib: float = 0.0  # on-chip key/value buffer, KiB (BRAM36)

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
