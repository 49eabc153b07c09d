"""The allocator on an array that switches dataflow per layer: each option runs in its best dataflow, the plan
records it, the simulator reproduces the predicted latency, and sweeps take ``dataflow = "per-layer"``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from workloads import mixed_dataflow_workload as workload

from allocator.ilp import Limits, allocate, build_problem, problem_from_json
from allocator.sweep.batch import simulate_columns
from allocator.sweep.codesign import allocate_points
from allocator.sweep.run import allocate_point, configure_target, load_sweep, simulate_point
from sim import load_target, simulate
from sim.target import PER_LAYER


def scores(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    rows = [(g.name, w, a, float(2.0 ** (-w) + 2.0 ** (-a)) * (i + 1)) for i, g in enumerate(workload().gemms)
            for w, a in pairs]  # fmt: skip
    return pd.DataFrame(rows, columns=["layer", "wbits", "abits", "sensitivity"])


PAIRS = [(8, 8), (4, 8), (4, 4), (2, 4)]


def test_options_carry_their_best_dataflow_and_the_plan_simulates_to_the_prediction() -> None:
    target = load_target("zcu102").replace_array(dataflow=PER_LAYER)
    problem = build_problem(workload(), target, scores(PAIRS), PAIRS)
    assert problem.per_layer_dataflow and set(problem.dataflow) > {"os"}
    frame = problem.to_frame()
    assert "dataflow" in frame.columns
    loose = allocate(problem, Limits())
    fastest = problem.fixed_cycles + sum(problem.latency_cycles[rows].min() for rows in problem.choice_rows)
    tight_ms = (loose.predicted.latency_ms + problem.cycles_to_ms(fastest)) / 2
    allocation = allocate(problem, Limits(latency_ms=tight_ms)).check()
    plan = allocation.plan()
    assert all("dataflow" in entry for entry in plan["layers"].values())
    bits = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    dataflows = {c.layer: c.dataflow for c in allocation.chosen}
    result = simulate(workload(), target, bits, layer_dataflows=dataflows)
    assert result.cycles == allocation.predicted.latency_cycles
    assert result.energy_mj == pytest_approx(allocation.predicted.energy_mj)
    # a fixed array never does better than the switching one on the same budget
    for fixed in ("os", "ws", "is"):
        other = build_problem(workload(), load_target("zcu102").replace_array(dataflow=fixed), scores(PAIRS), PAIRS)
        assert not other.per_layer_dataflow and "dataflow" not in other.to_frame().columns
        best = allocate(other, Limits(latency_ms=allocation.predicted.latency_ms))
        assert not best.ok or best.objective >= allocation.objective - 1e-12
    # the JSON re-solves to the same plan, dataflows included
    obj = {
        **allocation.to_json(),
        "clock_mhz": problem.clock_mhz,
        "fixed_cycles": problem.fixed_cycles,
        "fixed_energy_mj": problem.fixed_energy_mj,
    }
    again = allocate(*problem_from_json(json.loads(json.dumps(obj))))
    assert again.plan()["layers"] == plan["layers"]  # (the JSON does not carry the model name)


def pytest_approx(value: float) -> object:
    import pytest

    return pytest.approx(value, rel=1e-12)


def test_energy_budget_prefers_least_energy_dataflows() -> None:
    target = load_target("zcu102").replace_array(dataflow=PER_LAYER)
    by_cycles = build_problem(workload(), target, scores(PAIRS), PAIRS)
    by_energy = build_problem(workload(), target, scores(PAIRS), PAIRS, prefer="energy_mj")
    assert (by_energy.energy_mj <= by_cycles.energy_mj + 1e-15).all()
    assert (by_cycles.latency_cycles <= by_energy.latency_cycles).all()


SWEEP = """
models = ["mixed"]

[grid]
target = ["zcu102", "bitfusion_16x32"]
rows = [4, 16]
cols = [8]
dataflow = ["os", "per-layer"]
bits = [[8, 8], [4, 4]]
"""


def test_sweeps_take_per_layer_dataflow(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(SWEEP))
    spec = load_sweep(path)
    points = spec.points
    workloads = {"mixed": workload()}
    got = simulate_columns(workloads, spec.targets, points.columns(np.arange(len(points))))
    for i, point in enumerate(points):
        alone = simulate_point(workloads["mixed"], configure_target(spec.targets[point.target], point), point)
        assert got["error"][i] == ""
        for name, value in alone.items():
            assert got[name][i] == value, (point, name)
    switching = [i for i, p in enumerate(points) if p.dataflow == PER_LAYER]
    assert switching and all(got["lut"][i] > 0 for i in switching)
    # co-design: the allocation of a per-layer point beats or equals the OS point of the same design
    allocate_path = tmp_path / "codesign.toml"
    allocate_path.write_text(
        'models = ["mixed"]\nallocate = true\n[grid]\ntarget = ["zcu102"]\ndataflow = ["os", "per-layer"]\n'
        "latency_ms = [0.05, 1.0]\n"
    )
    spec = load_sweep(allocate_path)
    chosen = list(spec.points)
    rows = allocate_points(workloads, spec.targets, chosen)
    for point, row in zip(chosen, rows, strict=True):
        alone = allocate_point(workloads["mixed"], configure_target(spec.targets[point.target], point), point)
        assert row["status"] == alone["status"]
        if row["status"] == "optimal":
            assert row["objective"] == alone["objective"] and row["cycles"] == alone["cycles"]
            if point.dataflow == PER_LAYER:
                assert '"dataflow"' in row["plan"]
