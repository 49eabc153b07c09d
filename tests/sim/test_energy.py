"""Energy (sim/energy.py) and DRAM traffic per layer: pinned figures, monotonicity, analytic byte counts."""

from __future__ import annotations

import dataclasses

import pytest

import sim
from sim import Gemm, Workload
from sim.energy import energy_model


def with_buffers(target: sim.Target, ifmap: int, filter_: int, ofmap: int) -> sim.Target:
    buffers = dataclasses.replace(
        target.accelerator.buffers, ifmap_bytes=ifmap, filter_bytes=filter_, ofmap_bytes=ofmap
    )
    return dataclasses.replace(target, accelerator=dataclasses.replace(target.accelerator, buffers=buffers))


def test_energy_of_one_gemm_is_pinned() -> None:
    # 100x70x40 at 8/8 on SCALE-Sim's 32x32 int8 OS array (ASIC, DDR4), everything fits in its 64 KiB buffers:
    # MACs 280,000 x (0.2 pJ multiply + 0.1 x 22/32 pJ accumulate) = 75,250 pJ; SRAM (4,000 x 3 + 2,800 x 4 +
    # 7,000 array-edge bytes + 13,800 DRAM bytes) x 2.5 pJ = 110,000 pJ; DRAM 13,800 x 162.5 pJ = 2,242,500 pJ
    result = sim.simulate(Workload.from_gemm(100, 70, 40), sim.load_target("scalesim_32x32"), (8, 8))
    assert (result.bytes_read, result.bytes_written) == (4000 + 2800, 7000)
    assert result.energy_mj == pytest.approx(2_427_750e-9)
    assert result.layers[0].energy_mj == pytest.approx(result.energy_mj)


def test_fewer_bits_cost_less_energy_on_packed_dsps() -> None:
    target = sim.load_target("zcu102")
    workload = Workload.from_gemm(197, 1152, 384)
    high = sim.simulate(workload, target, (8, 8)).energy_mj
    low = sim.simulate(workload, target, (4, 4)).energy_mj
    assert 0 < low < high
    model = energy_model(target)
    assert model.mac_pj(4, 4) < model.mac_pj(8, 8)
    assert energy_model(sim.load_target("u280")).dram_pj_per_byte < model.dram_pj_per_byte  # HBM2 below DDR4


def test_dram_bytes_reach_the_analytic_minimum_when_buffers_hold_everything() -> None:
    m, n, k = 150, 90, 60
    for dataflow in ("os", "ws", "is"):
        target = with_buffers(sim.load_target("scalesim_32x32"), 1 << 22, 1 << 22, 1 << 22)
        layer = sim.simulate(Workload.from_gemm(m, n, k), target, (8, 8), dataflow=dataflow).layers[0]
        assert (layer.bytes_read, layer.bytes_written) == (m * k + k * n, m * n), dataflow


def test_dram_bytes_follow_the_reuse_the_buffers_allow() -> None:
    # OS on 32x32: A row blocks are loaded once (they depend on the outer loop only); a filter buffer too small
    # for the whole 60x90 weight re-reads every 60x32 weight tile once per row block (⌈150/32⌉ = 5 times)
    m, n, k = 150, 90, 60
    target = with_buffers(sim.load_target("scalesim_32x32"), 1 << 22, 4096, 1 << 22)
    layer = sim.simulate(Workload.from_gemm(m, n, k), target, (8, 8)).layers[0]
    assert layer.bytes_read == m * k + 5 * k * n
    assert layer.bytes_written == m * n
    # WS: outputs accumulate over K folds in the ofmap buffer; when a partial-sum tile does not fit, 32-bit partial
    # sums spill: each non-final K fold writes them and the next reads them back
    tiny = with_buffers(sim.load_target("scalesim_32x32"), 1 << 22, 1 << 22, 64)
    ws = sim.simulate(Workload.from_gemm(m, n, k), tiny, (8, 8), dataflow="ws").layers[0]
    k_folds = 2  # ⌈60/32⌉
    assert ws.bytes_written == m * n + (k_folds - 1) * 4 * m * n
    assert ws.bytes_read == m * k + k * n + (k_folds - 1) * 4 * m * n  # A fits its buffer: loaded once


def test_simulate_json_has_the_new_fields() -> None:
    workload = Workload.from_ops("w", [Gemm("g", "gemm", 64, 64, 64, weight_params=64 * 64)])
    data = sim.simulate(workload, sim.load_target("zcu102"), (8, 8)).to_json()
    assert {"bytes_read", "bytes_written", "energy_mj", "fold_pipelining"} <= set(data)
    layer = data["layers"][0]
    assert {"bytes_read", "bytes_written", "energy_mj", "fused_cycles", "unit", "fused_into"} <= set(layer)
    assert layer["bytes_read"] == data["bytes_read"] > 0
