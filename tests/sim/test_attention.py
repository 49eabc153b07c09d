"""Attention engines (sim/attention.py): the attention matmuls on a datapath of their own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_target import GOOD, load_error, replace_once, write

import sim
from sim import Gemm, VectorOp, Workload
from sim.attention import AttentionEngine, attention_iterations
from sim.errors import InputError
from sim.patchwise import TokenSplit
from sim.resources import dsps_per_multiplier

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ATTENTION = """
[accelerator.attention]
queries = 4
dims = 8
pipeline_depth = 10
multiplier_bits = [32, 32]
buffer_kib = 96
reread = true
port_bytes_per_cycle = 16
source = "assumption: test"
"""


def naive_iterations(kind: str, m: int, n: int, k: int, count: int, queries: int, dims: int) -> int:
    """Step the engine's loop nest (Edge-MoE's compute_q_matmul_k / compute_attn_matmul_v) one iteration at a
    time: heads × query blocks × keys × head-dim blocks, and check every MAC of the GEMM is done exactly once."""
    tokens, head_dim = (n, k) if kind == "attn_qk" else (k, n)
    done = np.zeros((m, tokens, head_dim), dtype=np.int64)
    iterations = 0
    for _ in range(count):
        done[:] = 0
        for q0 in range(0, m, queries):
            for token in range(tokens):
                for d0 in range(0, head_dim, dims):
                    iterations += 1
                    done[q0 : q0 + queries, token, d0 : d0 + dims] += 1
        assert (done == 1).all()
    return iterations


def with_engine(target: sim.Target, engine: AttentionEngine) -> sim.Target:
    return dataclasses.replace(target, accelerator=dataclasses.replace(target.accelerator, attention=engine))


def block() -> Workload:
    """One attention block: qkv, q·kᵀ of 3 heads over 33 tokens, softmax, attn·v, projection, add."""
    return Workload.from_ops(
        "block",
        [
            Gemm("qkv", "qkv", 33, 144, 48, weight_params=48 * 144),
            Gemm("qk", "attn_qk", 33, 33, 16, b_is_weight=False, count=3),
            VectorOp("softmax", "softmax", 3 * 33 * 33, 33),
            Gemm("av", "attn_av", 33, 16, 33, b_is_weight=False, count=3),
            Gemm("proj", "proj", 33, 48, 48, weight_params=48 * 48),
            VectorOp("add", "add", 33 * 48),
        ],
    )


@FAST
@given(
    kind=st.sampled_from(["attn_qk", "attn_av"]),
    m=st.integers(1, 20),
    n=st.integers(1, 20),
    k=st.integers(1, 20),
    count=st.integers(1, 3),
    queries=st.integers(1, 6),
    dims=st.integers(1, 9),
)
def test_iterations_equal_the_stepped_loop_nest(
    kind: str, m: int, n: int, k: int, count: int, queries: int, dims: int
) -> None:
    assert attention_iterations(kind, m, n, k, count, queries, dims) == naive_iterations(
        kind, m, n, k, count, queries, dims
    )


def test_edge_moe_loop_bound() -> None:
    # Edge-MoE (984b23b) compute_q_matmul_k on M3ViT: 33 query blocks of 4 x 129 keys x 192 / 8 dim blocks
    assert attention_iterations("attn_qk", 129, 129, 64, 3, 4, 8) == 33 * 129 * 24 == 102_168
    with pytest.raises(ValueError, match="not an attention matmul kind"):
        attention_iterations("qkv", 1, 1, 1, 1, 1, 1)


def test_target_file_reads_the_engine_and_its_sources(tmp_path: Path) -> None:
    target = sim.load_target(write(tmp_path, GOOD + ATTENTION))
    assert target.accelerator.attention == AttentionEngine(
        4, 8, 10, (32, 32), 96.0, reread=True, streamed=False, instances=1, port_bytes_per_cycle=16.0
    )
    assert target.source("accelerator.attention.queries") == "assumption: test"
    assert sim.load_target(write(tmp_path, GOOD, "plain.toml")).accelerator.attention is None


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("queries = 4", "queries = 0", ": accelerator.attention.queries: must be positive, got 0"),
        ("dims = 8", "dims = 8.5", ": accelerator.attention.dims: expected an integer"),
        ('source = "assumption: test"\n', "", ": accelerator.attention.queries: missing source"),
        ("buffer_kib = 96", "buffer_kb = 96", ": accelerator.attention.buffer_kb: unknown key"),
        ("pipeline_depth = 10", "pipeline_depth = -1", ": accelerator.attention.pipeline_depth: must be at least 0"),
        ("reread = true", "reread = 1", ": accelerator.attention.reread: expected true or false, got an integer"),
        ("reread = true", "streamed = true", ": accelerator.attention.instances: a streamed engine runs"),
        ("port_bytes_per_cycle = 16", "port_bytes_per_cycle = 0", ": accelerator.attention.port_bytes_per_cycle: must"),
    ],
)
def test_bad_engine_tables_are_named(tmp_path: Path, old: str, new: str, needle: str) -> None:
    text = GOOD + replace_once(ATTENTION, old, new)
    assert needle in load_error(tmp_path, text)


def test_attention_gemms_run_on_the_engine_and_layers_add_up() -> None:
    base = sim.load_target("zcu102")
    engine = AttentionEngine(4, 8, 10)
    target = with_engine(base, engine)
    workload = block()
    result = sim.simulate(workload, target, ideal_memory=True)
    rows = {layer.name: layer for layer in result.layers}
    for name, kind, (m, n, k) in (("qk", "attn_qk", (33, 33, 16)), ("av", "attn_av", (33, 16, 33))):
        layer = rows[name]
        assert layer.unit == "attention" and layer.dataflow == "os"
        assert layer.compute_cycles == attention_iterations(kind, m, n, k, 3, 4, 8) + 10
    plain = sim.simulate(workload, base, ideal_memory=True)
    for name in ("qkv", "proj"):  # the weight layers stay on the array, unchanged
        assert rows[name].unit == "" and rows[name].cycles == next(x for x in plain.layers if x.name == name).cycles
    assert result.cycles == sum(layer.cycles for layer in result.layers)
    # the engine's 32 MACs per cycle are slower than the 28x48 packed array: attention now costs more
    assert result.cycles > plain.cycles


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("ideal", [True, False])
def test_cost_table_plus_vector_cycles_is_the_whole_model(ideal: bool, streamed: bool) -> None:
    target = with_engine(sim.load_target("zcu102"), AttentionEngine(2, 4, 6, streamed=streamed))
    workload = block()
    table = sim.cost_table(workload, target, [(8, 8), (4, 4)], ideal_memory=ideal)
    fixed = sim.vector_cycles(workload, target)
    plan = {"qkv": (4, 4), "qk": (8, 8), "av": (4, 4), "proj": (8, 8)}
    result = sim.simulate(workload, target, plan, ideal_memory=ideal)
    picked = [table[(table.name == n) & (table.wbits == w) & (table.abits == a)] for n, (w, a) in plan.items()]
    assert fixed + sum(int(r.cycles.iloc[0]) for r in picked) == result.cycles
    assert set(table[table.name.isin(["qk", "av"])].dataflow) == {"os"}
    assert sim.vector_energy_mj(workload, target) + sum(float(r.energy_mj.iloc[0]) for r in picked) == pytest.approx(
        result.energy_mj
    )


def test_engine_waits_for_its_dram_traffic() -> None:
    target = with_engine(sim.load_target("zcu102"), AttentionEngine(64, 64))
    slow = dataclasses.replace(target, memory=dataclasses.replace(target.memory, bandwidth_gbps=0.01))
    layer = next(x for x in sim.simulate(block(), slow).layers if x.name == "qk")
    # q (33x16) and k (16x33) read once per head, the 33x33 scores written once, at 8 bits
    assert layer.bytes_read == 3 * (33 * 16 + 16 * 33) and layer.bytes_written == 3 * 33 * 33
    moved = (layer.bytes_read + layer.bytes_written) / slow.bytes_per_cycle
    assert layer.compute_cycles + layer.stall_cycles == int(np.ceil(moved))
    ideal = next(x for x in sim.simulate(block(), slow, ideal_memory=True).layers if x.name == "qk")
    assert ideal.stall_cycles == 0 and ideal.compute_cycles == layer.compute_cycles


def test_fused_softmax_drains_query_blocks_behind_the_engine() -> None:
    from sim.nonlinear import Nonlinear, NonlinearUnit

    base = sim.load_target("zcu102")
    units = tuple(
        NonlinearUnit("softmax", "own", True, 1.0, 5, 0, 0, 0, 64) if kind == "softmax" else NonlinearUnit(kind)
        for kind in ("softmax", "gelu", "layernorm", "add", "requant")
    )
    acc = dataclasses.replace(base.accelerator, nonlinear=Nonlinear(units, 0, False), attention=AttentionEngine(4, 16))
    target = dataclasses.replace(base, accelerator=acc)
    layer = next(x for x in sim.simulate(block(), target, ideal_memory=True).layers if x.name == "qk")
    # 3 heads x 9 query blocks hand on rows; softmax at 1 element per cycle outlasts the engine's 891 cycles
    chunks = 3 * 9
    engine_cycles = attention_iterations("attn_qk", 33, 33, 16, 3, 4, 16)
    per_chunk = -(-3 * 33 * 33 // chunks)
    first = -(-engine_cycles // chunks)
    assert layer.fused_cycles == max(engine_cycles, first + (chunks - 1) * per_chunk) + per_chunk + 5 - engine_cycles


def test_engine_resources() -> None:
    base = sim.load_target("zcu102")
    target = with_engine(base, AttentionEngine(4, 8, 0, (16, 32), 45.0))
    parts = {part.component: part for part in sim.estimate_resources(target).breakdown}
    engine = parts["attention_engine"]
    assert engine.dsp == 32 * dsps_per_multiplier(target, 16, 32) == 64
    two = with_engine(base, AttentionEngine(4, 8, 0, (16, 32), 45.0, instances=2))
    assert {p.component: p for p in sim.estimate_resources(two).breakdown}["attention_engine"].dsp == 128
    assert engine.bram36 == 10  # 45 KiB of key/value buffer in 4.5 KiB BRAM36 blocks
    assert "attention_engine" not in {part.component for part in sim.estimate_resources(base).breakdown}
    total = sim.estimate_resources(target)
    assert total.dsp == sim.estimate_resources(base).dsp + engine.dsp


def test_token_split_on_the_engine_is_refused() -> None:
    target = sim.load_target("zcu102")
    if target.accelerator.patchwise is None:
        from sim.patchwise import Patchwise

        target = dataclasses.replace(
            target, accelerator=dataclasses.replace(target.accelerator, patchwise=Patchwise(False, 0))
        )
    target = with_engine(target, AttentionEngine(4, 8))
    with pytest.raises(InputError, match="runs on the attention engine"):
        sim.simulate(block(), target, (8, 8), token_splits={"qk": TokenSplit(4, 0.5)})


def test_reread_engine_reads_keys_once_per_query_block_at_its_port_rate() -> None:
    base = sim.load_target("zcu102")
    engine = AttentionEngine(4, 8, 0, (32, 32), 0.0, reread=True, port_bytes_per_cycle=16.0)
    target = with_engine(base, engine)
    layer = next(x for x in sim.simulate(block(), target).layers if x.name == "qk")
    blocks = -(-33 // 4)
    # q (33x16) once, k (16x33) once per block of 4 queries, the 33x33 scores once: 32-bit words (multiplier_bits)
    assert layer.bytes_read == 3 * (33 * 16 * 4 + blocks * 16 * 33 * 4)
    assert layer.bytes_written == 3 * 33 * 33 * 4
    assert base.bytes_per_cycle > 16.0  # the port, not the board, sets the rate
    moved = -(-(layer.bytes_read + layer.bytes_written) // 16)
    assert layer.compute_cycles + layer.stall_cycles == max(layer.compute_cycles, moved)
    assert moved > layer.compute_cycles  # this engine is port-bound, as Edge-MoE's is on 128-bit HP ports


def test_wider_multiplier_words_are_what_the_array_moves() -> None:
    base = sim.load_target("targets/published/edgemoe_zcu102.toml")
    assert base.accelerator.multiplier_bits == (16, 32)
    plain = dataclasses.replace(base, accelerator=dataclasses.replace(base.accelerator, multiplier_bits=None))
    workload = Workload.from_ops("one", [Gemm("fc", "fc1", 64, 64, 64, weight_params=64 * 64)])
    wide = next(x for x in sim.simulate(workload, base).layers)
    narrow = next(x for x in sim.simulate(workload, plain).layers)
    # 16-bit weights and 32-bit activations: the whole operands and outputs, 2x and 4x the 8-bit bytes
    assert narrow.bytes_read == 64 * 64 * 2 and narrow.bytes_written == 64 * 64
    assert wide.bytes_read == 64 * 64 * (2 + 4) and wide.bytes_written == 64 * 64 * 4
    assert wide.compute_cycles == narrow.compute_cycles


def test_streamed_engine_overlaps_attn_v_with_q_k_and_keeps_the_scores() -> None:
    base = sim.load_target("zcu102")
    plain = {x.name: x for x in sim.simulate(block(), with_engine(base, AttentionEngine(4, 8))).layers}
    streamed = {
        x.name: x for x in sim.simulate(block(), with_engine(base, AttentionEngine(4, 8, streamed=True))).layers
    }
    assert streamed["qk"].compute_cycles == plain["qk"].compute_cycles
    # attn·v adds only its last of 9 query blocks: 3 heads x 33 keys x 2 dim blocks
    assert streamed["av"].compute_cycles == 3 * 33 * 2 == plain["av"].compute_cycles // 9
    assert streamed["qk"].bytes_written == 0 and streamed["av"].bytes_read == 3 * 33 * 16
    assert streamed["qk"].bytes_read == plain["qk"].bytes_read
