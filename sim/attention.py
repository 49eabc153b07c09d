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

A ``streamed`` engine (UbiMoE's attention kernel: q·kᵀ hands each block of scores, through softmax, to attn·v
while it computes the next block) overlaps the two matmuls of a head: q·kᵀ keeps its full cost, and attn·v adds
only its last query block, its iterations / ⌈M/Q⌉. The scores stay in the engine: q·kᵀ writes nothing to DRAM and
attn·v reads only V. Both costs depend only on shapes, so they still add up per layer (the ILP's cost table)
whatever bits each layer takes.

Resources (sim/resources.py): ``instances`` × Q·D multipliers (an HLS design that writes q·kᵀ and attn·v as two
functions builds two blocks; a streamed engine needs both at once) with the array's DSP rule (``multiplier_bits``
of their own, else the array's), an adder and an accumulator register per multiplier, and ``buffer_kib`` of
key/value buffer in BRAM36.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ATTENTION_KINDS", "AttentionEngine", "attention_bytes", "attention_iterations", "engine_cycles"]

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
    streamed: bool = False  # attn·v runs one query block behind q·kᵀ; the scores never leave the engine
    instances: int = 1  # copies of the queries × dims multiplier block (2: q·kᵀ and attn·v built apart)
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


def engine_cycles(kind: str, m: int, n: int, k: int, count: int, engine: AttentionEngine) -> int:
    """Compute cycles of one attention GEMM node on ``engine``: its loop iterations (for attn·v on a ``streamed``
    engine, only its last query block) plus the pipeline depth."""
    iterations = attention_iterations(kind, m, n, k, count, engine.queries, engine.dims)
    if engine.streamed and kind == "attn_av":
        iterations //= -(-m // engine.queries)
    return iterations + engine.pipeline_depth


def attention_bytes(
    kind: str, m: int, n: int, k: int, count: int, left_bits: int, right_bits: int, engine: AttentionEngine
) -> tuple[int, int]:
    """(bytes read, bytes written) of one attention GEMM node (``count`` × M×K · K×N) on ``engine``: the left
    operand once, the right operand once or (``reread``) once per block of ``queries`` rows, the output once at
    ``left_bits``; words packed densely. On a ``streamed`` engine the scores stay on chip: q·kᵀ writes nothing
    and attn·v reads only V."""
    right_reads = -(-m // engine.queries) if engine.reread else 1
    left = 0 if engine.streamed and kind == "attn_av" else -(-m * k * left_bits // 8)
    read = count * (left + right_reads * -(-k * n * right_bits // 8))
    written = 0 if engine.streamed and kind == "attn_qk" else count * -(-m * n * left_bits // 8)
    return read, written
