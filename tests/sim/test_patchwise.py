"""sim/patchwise.py and token-split GEMMs in ``simulate``: row groups, tile widths, packed traffic, target support."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from sim import InputError, Target, Workload, load_target, simulate
from sim.patchwise import Patchwise, TokenSplit, costed_rows, high_rows
from sim.pe import macs_per_pe
from sim.simulate import token_split_cost_table
from sim.workload import Gemm
from tests.sim.test_target import GOOD, load_error, replace_once, write


def with_patchwise(name: str, token_sort: bool, reorder: int = 0) -> Target:
    target = load_target(name)
    acc = dataclasses.replace(target.accelerator, patchwise=Patchwise(token_sort, reorder))
    return dataclasses.replace(target, accelerator=acc)


def test_high_rows_is_the_ceiling_of_the_fraction() -> None:
    assert high_rows(197, 0.25) == 50
    assert high_rows(16, 0.25) == 4
    assert high_rows(1, 0.9) == 1


def test_costed_rows_sorted_and_worst_placement() -> None:
    assert costed_rows("os", 28, 48, 2, 197, 50, True) == (50, 147)
    # unsorted OS: 8 row tiles of 28; 50 high tokens can touch every tile
    assert costed_rows("os", 28, 48, 2, 197, 50, False) == (197, 0)
    # 3 high tokens touch at most 3 tiles of 28 rows
    assert costed_rows("os", 28, 48, 2, 197, 3, False) == (84, 113)
    # WS streams all of M through every fold: any high token makes every row high
    assert costed_rows("ws", 28, 48, 2, 197, 1, False) == (197, 0)
    # IS tiles M by C·p columns at the high bits' lanes
    assert costed_rows("is", 8, 16, 2, 197, 2, False) == (64, 133)


def naive_os_compute_cycles(rows: int, cols: int, pe: str, m: int, n: int, k: int, row_bits: list[int], w: int) -> int:
    """Oracle: walk M's row tiles in order, each at the widest bits of its rows (SCALE-Sim OS fold cycles)."""
    total = 0
    for start in range(0, m, rows):
        bits = max(row_bits[start : start + rows])
        lanes = macs_per_pe(pe, w, bits)
        total += math.ceil(n / (cols * lanes)) * (k + rows + cols - 2)
    return total


@pytest.mark.parametrize(("m", "fraction"), [(197, 0.25), (197, 0.02), (65, 0.5), (17, 0.25)])
@pytest.mark.parametrize("token_sort", [True, False])
def test_split_compute_cycles_match_a_per_row_oracle(m: int, fraction: float, token_sort: bool) -> None:
    target = with_patchwise("bitfusion_16x32", token_sort)  # OS, no fold pipelining, 16 rows
    acc = target.accelerator
    assert acc.dataflow == "os" and not acc.fold_pipelining
    n, k, w, hi, lo = 384, 192, 4, 8, 2
    workload = Workload.from_gemm(m, n, k, name="g")
    result = simulate(workload, target, {"g": (w, hi)}, ideal_memory=True, token_splits={"g": TokenSplit(lo, fraction)})
    high = high_rows(m, fraction)
    if token_sort:  # the groups gathered: high rows first, then the low ones, each group tiled on its own
        oracle = naive_os_compute_cycles(acc.rows, acc.cols, acc.pe, high, n, k, [hi] * high, w)
        oracle += naive_os_compute_cycles(acc.rows, acc.cols, acc.pe, m - high, n, k, [lo] * (m - high), w)
    else:  # image order, worst placement: one high token in each row tile, as many tiles as there are high tokens
        bits = [lo] * m
        for j in range(high):
            bits[(j * acc.rows) % m if j < math.ceil(m / acc.rows) else j] = hi
        oracle = naive_os_compute_cycles(acc.rows, acc.cols, acc.pe, m, n, k, bits, w)
    layer = result.layers[0]
    assert layer.compute_cycles == oracle
    assert (layer.abits, layer.abits_low, layer.token_fraction) == (hi, lo, fraction)
    assert layer.to_json()["abits_low"] == lo


def test_reorder_cycles_are_added_when_the_design_sorts() -> None:
    workload = Workload.from_gemm(197, 384, 384, name="g")
    split = {"g": TokenSplit(4, 0.25)}
    base = simulate(workload, with_patchwise("zcu102", True, 0), {"g": (4, 8)}, token_splits=split).cycles
    sorted_ = simulate(workload, with_patchwise("zcu102", True, 3), {"g": (4, 8)}, token_splits=split).cycles
    assert sorted_ - base == 3 * 197


def test_packed_traffic_follows_each_groups_bits() -> None:
    # everything fits on chip: A is read once per group at its bits, B once (the low group finds it on chip)
    target = with_patchwise("zcu102", True)
    m, n, k, w = 197, 96, 64, 8
    workload = Workload.from_gemm(m, n, k, name="g")
    layer = simulate(workload, target, {"g": (w, 8)}, token_splits={"g": TokenSplit(2, 0.25)}).layers[0]
    high = high_rows(m, 0.25)
    a_bytes = math.ceil(high * k * 8 / 8) + math.ceil((m - high) * k * 2 / 8)
    assert layer.bytes_read == a_bytes + k * n * w // 8
    # outputs are written at the GEMM's activation bits (sim/simulate.py's rule), so at each group's
    assert layer.bytes_written == math.ceil(high * n * 8 / 8) + math.ceil((m - high) * n * 2 / 8)


def test_a_split_deit_qkv_on_zcu102_costs_less_than_the_high_bits_and_more_than_the_low() -> None:
    target = load_target("zcu102")
    workload = Workload.from_ops("qkv", [Gemm("qkv", "qkv", 197, 1152, 384, weight_params=384 * 1152)])
    high = simulate(workload, target, {"qkv": (4, 8)}).cycles
    low = simulate(workload, target, {"qkv": (4, 4)}).cycles
    split = simulate(workload, target, {"qkv": (4, 8)}, token_splits={"qkv": TokenSplit(4, 0.25)}).cycles
    assert low < split < high


def test_the_cost_table_rows_equal_simulate() -> None:
    target = load_target("zcu102")
    workload = Workload.from_ops(
        "two", [Gemm("a", "qkv", 197, 1152, 384, weight_params=384 * 1152), Gemm("b", "fc1", 197, 1536, 384)]
    )
    table = token_split_cost_table(workload, target, [(4, 8, 4), (4, 4, 4), (8, 6, 2)], 0.25)
    assert sorted(set(zip(table["wbits"], table["abits"], table["abits_low"], strict=True))) == [(4, 8, 4), (8, 6, 2)]
    for row in table.itertuples():
        result = simulate(
            workload, target, {"a": (row.wbits, row.abits), "b": (row.wbits, row.abits)},
            token_splits={"a": TokenSplit(row.abits_low, 0.25), "b": TokenSplit(row.abits_low, 0.25)},
        )  # fmt: skip
        assert row.cycles == next(layer.cycles for layer in result.layers if layer.name == row.name)


def test_a_target_without_patchwise_support_refuses_splits() -> None:
    workload = Workload.from_gemm(197, 96, 64, name="g")
    with pytest.raises(InputError, match="'kv260' has no patch-wise support"):
        simulate(workload, load_target("kv260"), {"g": (8, 8)}, token_splits={"g": TokenSplit(4, 0.5)})
    with pytest.raises(InputError, match="no patch-wise support"):
        token_split_cost_table(workload, load_target("kv260"), [(8, 8, 4)], 0.5)


def test_bad_splits_are_refused() -> None:
    workload = Workload.from_gemm(197, 96, 64, name="g")
    target = load_target("zcu102")
    with pytest.raises(InputError, match="outside \\(0, 1\\)"):
        TokenSplit(4, 1.0)
    with pytest.raises(InputError, match="must be below abits=4"):
        simulate(workload, target, {"g": (8, 4)}, token_splits={"g": TokenSplit(4, 0.5)})
    with pytest.raises(InputError, match="'h', which is not a GEMM"):
        simulate(workload, target, {"g": (8, 8)}, token_splits={"h": TokenSplit(4, 0.5)})


def test_the_target_file_table_is_validated(tmp_path: Path) -> None:
    table = '\n[accelerator.patchwise]\ntoken_sort = true\nreorder_cycles_per_token = 2\nsource = "assumption: t"\n'
    target = load_target(write(tmp_path, GOOD + table))
    assert target.accelerator.patchwise == Patchwise(True, 2)
    assert target.source("accelerator.patchwise.reorder_cycles_per_token") == "assumption: t"
    unsourced = replace_once(GOOD + table, 'source = "assumption: t"\n', "")
    assert "accelerator.patchwise.reorder_cycles_per_token" in load_error(tmp_path, unsourced)
    negative = replace_once(GOOD + table, "reorder_cycles_per_token = 2", "reorder_cycles_per_token = -1")
    assert "accelerator.patchwise.reorder_cycles_per_token" in load_error(tmp_path, negative)
