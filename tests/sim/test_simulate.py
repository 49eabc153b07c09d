"""sim.simulate / cost_table / vector_cycles and sim.pe: SCALE-Sim closed forms, properties, validation."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_gemm_cycles

from sim import Gemm, InputError, VectorOp, Workload, cost_table, macs_per_pe, simulate, vector_cycles
from sim.simulate import VECTOR_OPS_PER_ELEMENT
from sim.target import Accelerator, Buffers, Caps, Device, Memory, Target

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_BITS = (2, 3, 4, 5, 6, 8)


def make_target(
    rows: int = 8,
    cols: int = 8,
    dataflow: str = "os",
    pe: str = "int8",
    *,
    ifmap_bytes: int = 64 * 1024,
    filter_bytes: int = 64 * 1024,
    ofmap_bytes: int = 64 * 1024,
    bandwidth_gbps: float = 8.0,
    clock_mhz: float = 200.0,
    vector_lanes: int = 16,
) -> Target:
    """A hand-built target (a ZCU102-sized device) for unit tests."""
    return Target(
        name="unit",
        description="hand-built test target",
        path=Path("unit.toml"),
        clock_mhz=clock_mhz,
        device=Device("XCZU9EG", lut=274_080, ff=548_160, dsp=2_520, bram36=912, uram=0),
        caps=Caps(lut=0.7, ff=0.5, dsp=0.8, bram36=0.8, uram=0.8),
        memory=Memory("ddr4", bandwidth_gbps),
        accelerator=Accelerator(
            rows=rows,
            cols=cols,
            dataflow=dataflow,
            pe=pe,
            weight_bits=ALL_BITS,
            act_bits=ALL_BITS,
            buffers=Buffers(ifmap_bytes, filter_bytes, ofmap_bytes),
            vector_lanes=vector_lanes,
        ),
        sources=(),
    )


def one_gemm(m: int, n: int, k: int, count: int = 1) -> Workload:
    return Workload.from_ops("g", [Gemm("g", "gemm", m, n, k, weight_params=k * n, count=count)])


def scalesim_compute(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """SCALE-Sim v3 compute cycles (DESIGN.md closed forms), without its minus 1."""
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2)
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2)
    return math.ceil(k / rows) * math.ceil(m / cols) * (2 * rows + cols + n - 2)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_ideal_8bit_int8_equals_scalesim_closed_forms(dataflow: str) -> None:
    rng = random.Random(f"closed-form-{dataflow}")
    checked = 0
    for _ in range(30):  # 30 arrays × 10 shapes = 300 per dataflow
        rows, cols = rng.randint(1, 64), rng.randint(1, 64)
        gemms = [
            Gemm(f"g{i}", "gemm", rng.randint(1, 800), rng.randint(1, 800), rng.randint(1, 800)) for i in range(10)
        ]
        result = simulate(Workload.from_ops("w", gemms), make_target(rows, cols, dataflow), (8, 8), ideal_memory=True)
        for gemm, layer in zip(gemms, result.layers, strict=True):
            assert layer.compute_cycles == scalesim_compute(dataflow, rows, cols, gemm.m, gemm.n, gemm.k)
            assert layer.stall_cycles == 0
            assert layer.cycles == layer.compute_cycles
            checked += 1
    assert checked == 300


def test_macs_per_pe_by_kind() -> None:
    assert [macs_per_pe("bitfusion", b, b) for b in (8, 4, 2)] == [1, 4, 16]
    assert macs_per_pe("bitfusion", 8, 4) == 2
    assert macs_per_pe("bitfusion", 3, 3) == 4  # 3-bit runs as 4-bit
    assert [macs_per_pe("dsp_packed", b, b) for b in (8, 6, 5, 4, 3, 2)] == [2, 2, 2, 4, 4, 4]
    assert macs_per_pe("dsp_packed", 4, 8) == 2
    assert [macs_per_pe("lut", b, b) for b in (8, 4, 2)] == [1, 3, 20]
    assert all(macs_per_pe("int8", w, a) == 1 for w in ALL_BITS for a in ALL_BITS)
    with pytest.raises(InputError, match="weight bits 9"):
        macs_per_pe("int8", 9, 8)
    with pytest.raises(InputError, match="unknown PE kind"):
        macs_per_pe("tpu", 8, 8)


@pytest.mark.parametrize("pe", ["bitfusion", "dsp_packed", "lut", "int8"])
def test_pe_width_widens_columns(pe: str) -> None:
    lanes = macs_per_pe(pe, 4, 4)
    result = simulate(one_gemm(40, 96, 30), make_target(8, 4, "os", pe), (4, 4), ideal_memory=True)
    assert result.layers[0].compute_cycles == math.ceil(40 / 8) * math.ceil(96 / (4 * lanes)) * (30 + 8 + 4 - 2)


def test_simulate_matches_cycle_stepping_reference() -> None:
    target = make_target(3, 2, "ws", "bitfusion", ifmap_bytes=40, filter_bytes=24, ofmap_bytes=64, bandwidth_gbps=0.4)
    result = simulate(one_gemm(7, 9, 8, count=2), target, (4, 8))
    lanes = macs_per_pe("bitfusion", 4, 8)
    expected = naive_gemm_cycles("ws", 3, 2, lanes, 7, 9, 8, 2, 8, 4, 8, 40, 24, 64, target.bytes_per_cycle)
    layer = result.layers[0]
    assert (layer.compute_cycles, layer.cycles) == expected[:2]
    assert layer.stall_cycles == layer.cycles - layer.compute_cycles > 0


shape = st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300))
array = st.tuples(st.integers(1, 32), st.integers(1, 32), st.sampled_from(["os", "ws", "is"]))
kinds = st.sampled_from(["int8", "bitfusion", "dsp_packed", "lut"])
buffers = st.tuples(st.integers(16, 1 << 16), st.integers(16, 1 << 16), st.integers(16, 1 << 16))
bandwidth = st.floats(0.05, 50.0)
bits = st.tuples(st.sampled_from(ALL_BITS), st.sampled_from(ALL_BITS))


def _target(arr: tuple, pe: str, buf: tuple, bw: float) -> Target:
    rows, cols, dataflow = arr
    return make_target(rows, cols, dataflow, pe, ifmap_bytes=buf[0], filter_bytes=buf[1], ofmap_bytes=buf[2],
                       bandwidth_gbps=bw)  # fmt: skip


@PROPS
@given(shape, array, kinds, buffers, bandwidth, bits)
def test_cycles_at_least_roofline(s: tuple, arr: tuple, pe: str, buf: tuple, bw: float, b: tuple) -> None:
    target = _target(arr, pe, buf, bw)
    result = simulate(one_gemm(*s), target, b)
    m, n, k = s
    macs = m * n * k
    lanes = macs_per_pe(pe, *b)
    moved = result.bytes_read + result.bytes_written
    assert result.cycles >= macs / (arr[0] * arr[1] * lanes)
    assert result.cycles >= moved / target.bytes_per_cycle - 1e-6
    # at least every operand and output byte moves once
    wbits, abits = b
    assert moved >= math.ceil(m * k * abits / 8) + math.ceil(k * n * wbits / 8) + math.ceil(m * n * abits / 8) - 2


@PROPS
@given(shape, array, kinds, buffers, bandwidth, bits, st.floats(1.0, 100.0))
def test_more_bandwidth_never_adds_cycles(s, arr, pe, buf, bw, b, factor) -> None:
    slow = simulate(one_gemm(*s), _target(arr, pe, buf, bw), b)
    fast = simulate(one_gemm(*s), _target(arr, pe, buf, bw * factor), b)
    assert fast.cycles <= slow.cycles


@PROPS
@given(shape, array, kinds, buffers, bandwidth, bits, bits)
def test_fewer_bits_never_add_cycles(s, arr, pe, buf, bw, b1, b2) -> None:
    low = (min(b1[0], b2[0]), min(b1[1], b2[1]))
    high = (max(b1[0], b2[0]), max(b1[1], b2[1]))
    target = _target(arr, pe, buf, bw)
    assert simulate(one_gemm(*s), target, low).cycles <= simulate(one_gemm(*s), target, high).cycles


@PROPS
@given(shape, array, kinds, buffers, bandwidth, bits)
def test_ideal_memory_never_exceeds_real(s, arr, pe, buf, bw, b) -> None:
    target = _target(arr, pe, buf, bw)
    ideal = simulate(one_gemm(*s), target, b, ideal_memory=True)
    real = simulate(one_gemm(*s), target, b)
    assert ideal.cycles <= real.cycles
    assert ideal.layers[0].compute_cycles <= real.layers[0].compute_cycles  # a small ofmap buffer may idle lanes


def _vit_like() -> Workload:
    ops = [
        Gemm("blocks.0.attn.qkv", "qkv", 50, 192, 64, weight_params=64 * 192),
        VectorOp("blocks.0.attn.softmax", "softmax", 3 * 50 * 50),
        Gemm("blocks.0.attn.matmul_qk", "attn_qk", 50, 50, 16, b_is_weight=False, count=3),
        Gemm("blocks.0.attn.matmul_av", "attn_av", 50, 16, 50, b_is_weight=False, count=3),
        Gemm("blocks.0.attn.proj", "proj", 50, 64, 64, weight_params=64 * 64),
        VectorOp("blocks.0.add", "add", 50 * 64),
        Gemm("blocks.1.attn.proj", "proj", 50, 64, 64, weight_params=64 * 64),
    ]
    return Workload.from_ops("tiny_vit", ops)


def test_result_objects_follow_the_contract() -> None:
    target = make_target()
    result = simulate(_vit_like(), target, (8, 8))
    data = result.to_json()
    contract = ["target", "model", "clock_mhz", "cycles", "latency_ms", "fits", "resources"]
    assert list(data)[: len(contract)] == contract and list(data)[-1] == "layers"
    # additions (issue #16): DRAM traffic, energy, fold pipelining
    assert list(data)[len(contract) : -1] == ["bytes_read", "bytes_written", "energy_mj", "fold_pipelining"]
    assert set(data["resources"]) == {"dsp", "lut", "ff", "bram36", "uram"}
    assert [row["name"] for row in data["layers"]] == [op.name for op in _vit_like().ops]
    fields = ["name", "kind", "m", "n", "k", "wbits", "abits", "compute_cycles", "stall_cycles", "cycles"]
    # and the per-layer dataflow (issue #18)
    added = [
        "fused_cycles", "bytes_read", "bytes_written", "energy_mj", "unit", "fused_into", "busy_cycles", "dataflow",
    ]  # fmt: skip
    assert all(list(row) == fields + added for row in data["layers"])
    assert data["cycles"] == sum(row["cycles"] for row in data["layers"])
    assert data["latency_ms"] == pytest.approx(data["cycles"] / (200.0 * 1e3))
    softmax = data["layers"][1]
    assert (softmax["m"], softmax["wbits"], softmax["stall_cycles"]) == (0, 0, 0)
    assert softmax["cycles"] == math.ceil(3 * 50 * 50 * VECTOR_OPS_PER_ELEMENT["softmax"] / 16)
    frame = result.to_frame()
    assert list(frame.columns) == fields + added and len(frame) == 7
    assert vector_cycles(_vit_like(), target) == softmax["cycles"] + data["layers"][5]["cycles"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.cycles = 0  # type: ignore[misc]


def test_ideal_memory_has_no_stalls_and_per_layer_plan_applies() -> None:
    workload = _vit_like()
    plan = {g.name: (4, 8) for g in workload.gemms} | {"blocks.0.attn.qkv": (2, 2)}
    result = simulate(workload, make_target(pe="bitfusion", bandwidth_gbps=0.5), plan, ideal_memory=True)
    assert all(layer.stall_cycles == 0 for layer in result.layers)
    qkv = result.layers[0]
    assert (qkv.wbits, qkv.abits) == (2, 2)
    assert qkv.compute_cycles == math.ceil(50 / 8) * math.ceil(192 / (8 * 16)) * (64 + 8 + 8 - 2)


def test_array_overrides() -> None:
    target = make_target(8, 8, "os")
    result = simulate(one_gemm(100, 100, 100), target, rows=4, cols=16, dataflow="ws", ideal_memory=True)
    assert (result.rows, result.cols, result.dataflow) == (4, 16, "ws")
    assert result.cycles == scalesim_compute("ws", 4, 16, 100, 100, 100)
    with pytest.raises(InputError, match="dataflow"):
        simulate(one_gemm(4, 4, 4), target, dataflow="rs")
    with pytest.raises(InputError, match="rows"):
        simulate(one_gemm(4, 4, 4), target, rows=0)


def test_bad_input_names_what_and_where() -> None:
    workload = _vit_like()
    narrow = dataclasses.replace(
        make_target(), accelerator=dataclasses.replace(make_target().accelerator, weight_bits=(4, 8))
    )
    with pytest.raises(InputError, match=r"layer 'blocks.0.attn.qkv': wbits=2.*not supported"):
        simulate(workload, narrow, (2, 8))
    with pytest.raises(InputError, match=r"'blocks\.9\.mlp\.fc1', which is not a GEMM"):
        simulate(workload, make_target(), {g.name: (8, 8) for g in workload.gemms} | {"blocks.9.mlp.fc1": (8, 8)})
    with pytest.raises(InputError, match=r"no bits for layer 'blocks\.0\.attn\.matmul_qk'"):
        simulate(workload, make_target(), {"blocks.0.attn.qkv": (8, 8)})
    with pytest.raises(InputError, match="wbits=0"):
        simulate(workload, make_target(), (0, 8))
    with pytest.raises(InputError, match="m=0"):
        simulate(one_gemm(0, 4, 4), make_target())
    bad = Gemm("bad", "gemm", 4, -1, 4)
    with pytest.raises(InputError, match="n=-1"):
        cost_table(_Raw([bad]), make_target(), [(8, 8)])


class _Raw:
    """A workload-like object that skips Workload's own checks, to reach the simulator's."""

    def __init__(self, gemms: list[Gemm]) -> None:
        self.name = "raw"
        self.gemms = tuple(gemms)
        self.ops = tuple(gemms)
        self.vector_ops = ()


def test_cost_table_rows_and_consistency() -> None:
    workload = _vit_like()
    target = make_target(pe="dsp_packed", bandwidth_gbps=1.0)
    pairs = [(w, a) for w in (2, 4, 8) for a in (4, 8)]
    table = cost_table(workload, target, pairs)
    assert len(table) == len(workload.gemms) * len(pairs)
    assert list(table.columns) == [
        "name", "kind", "wbits", "abits", "m", "n", "k", "count", "macs", "weight_params",
        "compute_cycles", "stall_cycles", "fused_cycles", "cycles", "bytes_read", "bytes_written", "energy_mj",
        "dataflow",
    ]  # fmt: skip
    assert (table.dataflow == target.accelerator.dataflow).all()
    assert (table.cycles == table.compute_cycles + table.stall_cycles + table.fused_cycles).all()
    for pair in pairs:
        result = simulate(workload, target, pair)
        rows = table[(table.wbits == pair[0]) & (table.abits == pair[1])]
        assert rows.cycles.sum() + vector_cycles(workload, target) == result.cycles
    av = table[(table.name == "blocks.0.attn.matmul_av") & (table.wbits == 8) & (table.abits == 8)].iloc[0]
    assert (av["count"], av["macs"]) == (3, 3 * 50 * 16 * 50)
    with pytest.raises(InputError, match="wbits=7"):
        cost_table(workload, target, [(7, 8)])


def test_layers_keep_counts_and_utilisation_counts_pe_cycles() -> None:
    target = make_target(8, 8, "os", "bitfusion")
    result = simulate(_vit_like(), target, (4, 4), ideal_memory=True)
    qk = result.layers[2]
    assert (qk.name, qk.count, qk.macs) == ("blocks.0.attn.matmul_qk", 3, 3 * 50 * 50 * 16)
    busy = sum(layer.macs / 4 for layer in result.layers if layer.m)  # bitfusion 4×4: 4 MACs per PE per cycle
    assert result.utilisation == pytest.approx(busy / (64 * result.cycles))
    exact = simulate(one_gemm(8, 32, 10), target, (4, 4), ideal_memory=True)  # one fold, all 8×8×4 lanes busy
    assert exact.utilisation == pytest.approx(10 / (10 + 8 + 8 - 2))
