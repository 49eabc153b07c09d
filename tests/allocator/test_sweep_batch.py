"""Batched sweep evaluation (allocator/sweep/batch.py, grid.py): point for point what one ``simulate`` per
point gives, ids as ``DesignPoint.point_id`` gives them, and a grid that is counted, never expanded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from allocator.sweep.batch import simulate_columns, unique_rows
from allocator.sweep.run import configure_target, load_sweep, simulate_point
from sim.errors import InputError
from sim.workload import Gemm, VectorOp, Workload


def vit_like() -> Workload:
    """Two identical blocks (repeated shapes, as a ViT has), attention heads as counts, vector operators."""
    ops: list = []
    for block in range(2):
        ops += [
            Gemm(f"b{block}.qkv", "qkv", 17, 48, 16, weight_params=768),
            Gemm(f"b{block}.qk", "matmul_qk", 17, 17, 8, count=2),
            VectorOp(f"b{block}.softmax", "softmax", 2 * 17 * 17),
            Gemm(f"b{block}.fc1", "fc1", 17, 64, 16, weight_params=1024),
            VectorOp(f"b{block}.gelu", "gelu", 17 * 64),
            Gemm(f"b{block}.wide", "proj", 17, 64, 16, weight_params=1024),  # fc1's shape, no fused GELU after it
            Gemm(f"b{block}.fc2", "fc2", 17, 16, 64, weight_params=1024),
        ]
    return Workload.from_ops("vit_like", [*ops, Gemm("head", "head", 1, 10, 16, weight_params=160)])


GRID = """
models = ["vit_like"]

[grid]
target = ["zcu102", "kv260", "u250", "bitfusion_16x32"]
rows = [2, 8]
cols = [3, 16]
dataflow = ["os", "ws", "is"]
bits = [[8, 8], [4, 8], [4, 4]]
clock_mhz = [100.0, 300.0]
bandwidth_gbps = [0.5, 19.2]
buffer_split = [[0.25, 0.5, 0.25], [0.001, 0.001, 0.998]]
"""


def test_batched_simulation_equals_one_simulate_per_point(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent(GRID))
    spec = load_sweep(path)
    points = spec.points
    assert len(points) == 4 * 2 * 2 * 3 * 3 * 2 * 2 * 2
    workloads = {"vit_like": vit_like()}
    indices = np.arange(len(points))
    got = simulate_columns(workloads, spec.targets, points.columns(indices))
    stalled = 0  # points whose stalls outweigh their compute
    fused = 0  # points on fused-unit targets whose fused operators add cycles after their GEMM
    for i, point in enumerate(points):
        alone = simulate_point(workloads["vit_like"], configure_target(spec.targets[point.target], point), point)
        assert got["error"][i] == ""
        for name, value in alone.items():
            assert got[name][i] == value, (point, name)  # exactly equal, floats included
        stalled += alone["stall_cycles"] > alone["compute_cycles"]
        fused += alone["cycles"] > alone["compute_cycles"] + alone["stall_cycles"]
    assert 0 < stalled < len(points)  # the grid reaches memory-bound and compute-bound designs
    assert fused > 0  # the fused tails are exercised, not only legacy timing


def test_rejected_bits_are_a_point_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text('models = ["vit_like"]\n[grid]\ntarget = ["zcu102"]\nbits = [[8, 8], [4, 4]]\n')
    spec = load_sweep(path)
    columns = spec.points.columns(np.arange(2))
    columns["wbits"] = np.array([8, 7], dtype=object)  # 7-bit weights: not supported by the target
    got = simulate_columns({"vit_like": vit_like()}, spec.targets, columns)
    assert got["error"][0] == "" and "wbits=7" in got["error"][1] and got["cycles"][0] > 0


def test_grid_ids_are_design_point_ids_and_the_historic_hash(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent(GRID))
    points = load_sweep(path).points
    indices = np.array([0, 7, 100, len(points) - 1])
    ids = points.ids(indices)
    for index, point_id in zip(indices, ids, strict=True):
        point = points[int(index)]
        fields = dataclasses.asdict(point)
        assert fields.pop("limit_energy_mj") is None  # added later: hashed only when set, so old ids stand
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        assert point_id == point.point_id == hashlib.sha256(text.encode()).hexdigest()[:16]
    with_energy = dataclasses.replace(points[0], allocate=True, limit_energy_mj=5.0)
    text = json.dumps(dataclasses.asdict(with_energy), sort_keys=True, separators=(",", ":"))
    assert with_energy.point_id == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_a_huge_grid_is_counted_not_built(tmp_path: Path) -> None:
    values = ", ".join(str(v) for v in range(1, 1001))
    path = tmp_path / "huge.toml"
    path.write_text(f'models = ["vit_like"]\n[grid]\ntarget = ["zcu102"]\nrows = [{values}]\ncols = [{values}]\n'
                    f'clock_mhz = [{", ".join(f"{v}.0" for v in range(100, 1100))}]\n')  # fmt: skip
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"1,000,000,000 design points is above the ceiling of 10,000,000; pass --yes"):
        load_sweep(path)
    spec = load_sweep(path, max_points=None)
    assert len(spec.points) == 10**9
    last = spec.points[-1]
    assert (last.rows, last.cols, last.clock_mhz) == (1000, 1000, 1099.0)
    assert time.perf_counter() - started < 5


def test_unique_rows_groups_equal_rows() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 3, size=(500, 4))
    first, inverse = unique_rows(keys)
    assert (keys[first][inverse] == keys).all()
    assert len(first) == len({tuple(row) for row in keys.tolist()})


def test_designs_the_batch_does_not_model_are_simulated_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text('models = ["vit_like"]\n[grid]\ntarget = ["zcu102", "kv260"]\nrows = [4, 16]\n')
    spec = load_sweep(path)
    base = spec.targets["kv260"]
    pipelined = dataclasses.replace(base, accelerator=dataclasses.replace(base.accelerator, fold_pipelining=True))
    targets = {**spec.targets, "kv260": pipelined}
    workloads = {"vit_like": vit_like()}
    points = list(spec.points)
    got = simulate_columns(workloads, targets, spec.points.columns(np.arange(len(points))))
    for i, point in enumerate(points):
        alone = simulate_point(workloads["vit_like"], configure_target(targets[point.target], point), point)
        assert got["error"][i] == ""
        for name, value in alone.items():
            assert got[name][i] == value, (point, name)


def test_targets_with_an_attention_engine_are_simulated_point_by_point(tmp_path: Path) -> None:
    # the attention engine (sim/attention.py) is costed by sim.simulate only: such points go the exact way
    root = Path(__file__).resolve().parents[2]
    engine = root / "targets" / "published" / "edgemoe_zcu102.toml"
    # and a further GEMM engine for the qkv layers (sim.target.Engine): the same, point by point
    arrays = tmp_path / "arrays.toml"
    arrays.write_text(
        (root / "targets" / "zcu102.toml").read_text()
        + '\n[[accelerator.engines]]\nname = "msa"\nkinds = ["qkv"]\nrows = 4\ncols = 8\nsource = "assumption: test"\n'
    )
    path = tmp_path / "grid.toml"
    path.write_text(
        'models = ["vit_like"]\n[grid]\n'
        f'target = ["zcu102", {json.dumps(str(engine))}, {json.dumps(str(arrays))}]\nrows = [4, 16]\nbits = [[8, 8]]\n'
    )
    spec = load_sweep(path)
    points = spec.points
    workload = Workload.from_ops(
        "vit_like",
        [
            Gemm("qkv", "qkv", 17, 48, 16, weight_params=768),
            Gemm("qk", "attn_qk", 17, 17, 8, b_is_weight=False, count=2),
            VectorOp("softmax", "softmax", 2 * 17 * 17, 17),
            Gemm("av", "attn_av", 17, 8, 17, b_is_weight=False, count=2),
        ],
    )
    got = simulate_columns({"vit_like": workload}, spec.targets, points.columns(np.arange(len(points))))
    engines = 0
    for i, point in enumerate(points):
        target = configure_target(spec.targets[point.target], point)
        alone = simulate_point(workload, target, point)
        assert got["error"][i] == ""
        for name, value in alone.items():
            assert got[name][i] == value, (point, name)
        engines += target.accelerator.attention is not None or bool(target.accelerator.engines)
    assert engines == 4
