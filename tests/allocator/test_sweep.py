"""Sweeps: file validation before any work, stable point ids, Dask execution, atomic parts, resume.

One Dask LocalCluster serves the whole module (starting one costs seconds). Evaluation is injected where the
test is about the machinery, so these tests do not depend on the simulator's speed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from boards import zcu102_like_16x16

from allocator.cli.main import main
from allocator.sweep.run import (
    DesignPoint,
    SweepSpec,
    configure_target,
    finished_ids,
    load_sweep,
    read_results,
    run_sweep,
)
from sim.errors import InputError
from sim.target import Target
from sim.workload import Gemm, Workload

# Dask ships the injected evaluate functions below by value: workers started apart cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DASK_SCHEDULER = (PYTHON, "-m", "distributed.cli.dask_scheduler")

GRID = """
models = ["tiny"]
points_per_part = 3

[grid]
target = ["zcu102", "kv260"]
rows = [16, 32]
dataflow = ["os", "ws"]
bits = [[8, 8], [4, 8]]
"""

REAL = """
models = ["mixbit_vit_test"]

[grid]
target = ["zcu102", "kv260"]
rows = [8, 16]
bits = [[8, 8], [4, 4]]
"""


board = zcu102_like_16x16


def tiny_workload() -> Workload:
    return Workload.from_ops("tiny", [Gemm("fc1", "fc1", 4, 8, 16, weight_params=128), Gemm("fc2", "fc2", 4, 16, 8)])


def fake_evaluate(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    """Cycles of an ideal output-stationary array: enough to tell points apart, no simulator involved."""
    assert (target.accelerator.rows, target.clock_mhz) == (point.rows, point.clock_mhz)
    cycles = sum(
        -(-g.m // point.rows) * -(-g.n // point.cols) * (g.k + point.rows + point.cols - 2) for g in workload.gemms
    )
    return {"cycles": cycles, "latency_ms": cycles / (point.clock_mhz * 1e3)}


def rejecting_evaluate(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    if point.rows == 32:
        raise InputError(f"rows={point.rows}: rejected by the simulator")
    return fake_evaluate(workload, target, point)


def failing_evaluate(workload: Workload, target: Target, point: DesignPoint) -> dict[str, Any]:
    if point.rows == 32 and point.dataflow == "ws" and point.target == "kv260":
        raise RuntimeError("injected failure")
    return fake_evaluate(workload, target, point)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------------------
# The file


def test_grid_expands_to_the_product_with_stable_ids(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    assert len(spec.points) == 2 * 2 * 2 * 2
    ids = [p.point_id for p in spec.points]
    assert len(set(ids)) == len(ids)
    assert [p.point_id for p in load_sweep(write(tmp_path, GRID, "again.toml")).points] == ids
    first = spec.points[0]
    assert (first.target, first.rows, first.dataflow, first.wbits, first.abits) == ("zcu102", 16, "os", 8, 8)
    from sim import load_target

    zcu102 = load_target("zcu102")
    assert first.cols == zcu102.accelerator.cols  # an absent axis takes the target's own value
    assert first.clock_mhz == zcu102.clock_mhz


def test_explicit_points_join_the_grid_without_duplicates(tmp_path: Path) -> None:
    text = (
        GRID
        + """
[[point]]
target = "zcu102"
rows = 16
dataflow = "os"
bits = [8, 8]

[[point]]
target = "zcu102"
rows = 64
cols = 8
clock_mhz = 150.0
buffer_split = [0.5, 0.25, 0.25]
"""
    )
    spec = load_sweep(write(tmp_path, text))
    assert len(spec.points) == 16 + 1  # the first point repeats a grid point
    last = spec.points[-1]
    assert (last.rows, last.cols, last.clock_mhz) == (64, 8, 150.0)
    total = last.ifmap_bytes + last.filter_bytes + last.ofmap_bytes
    assert last.ifmap_bytes == total // 2


def test_target_files_resolve_against_the_sweep_file(tmp_path: Path) -> None:
    from sim import load_target

    shipped = load_target("zcu102")
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "mine.toml").write_bytes(shipped.path.read_bytes())
    spec = load_sweep(write(tmp_path, 'models = ["tiny"]\n[grid]\ntarget = ["boards/mine.toml"]\n'))
    point = spec.points[0]
    assert point.target == str((tmp_path / "boards" / "mine.toml").resolve())
    assert spec.targets[point.target].device == shipped.device
    with pytest.raises(InputError, match=r": grid.target\[0\]: "):
        load_sweep(write(tmp_path, 'models = ["tiny"]\n[grid]\ntarget = ["boards/missing.toml"]\n'))


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('models = ["tiny"]\ncolour = 3\n[grid]\ntarget = ["zcu102"]\n', "colour", "unknown key"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrowz = [8]\n', "grid.rowz", "unknown key; expected one of"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrows = []\n', "grid.rows", "expected a non-empty list"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102", "no_such_board"]\n', "grid.target[1]", "no_such_board"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrows = ["32"]\n', "grid.rows[0]", "expected an integer"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrows = [0]\n', "grid.rows[0]", "must be positive"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\ndataflow = ["rs"]\n', "grid.dataflow[0]", "expected one"),
        (
            'models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nbuffer_split = [[0.5, 0.5, 0.5]]\n',
            "grid.buffer_split[0]",
            "sum to 1",
        ),
        (
            'models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nbandwidth_gbps = [1e-300]\n',
            "grid.bandwidth_gbps[0]",
            "must be at least 0.01",
        ),
        ('models = []\n[grid]\ntarget = ["zcu102"]\n', "models", "non-empty"),
        ('models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nlatency_ms = [5.0]\n', "grid.latency_ms", "allocate = true"),
        ('models = ["tiny"]\n[[point]]\nrows = 8\n', "point[0].target", "missing"),
        ('models = ["tiny"]\npoints_per_part = -5\n[grid]\ntarget = ["zcu102"]\n', "points_per_part", "positive"),
        ('\ufeffmodels = ["tiny"]\n[grid]\ntarget = ["zcu102"]\n', "", "byte-order mark (BOM)"),
        ('models = ["tiny"]\nmodels = ["b"]\n[grid]\ntarget = ["zcu102"]\n', "models", "duplicate key (line 2)"),
    ],
)
def test_malformed_files_fail_naming_file_and_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_sweep(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: ") and reason in message, message
    assert "\n" not in message


def test_a_sweep_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_bytes(b'models = ["t\xe9st"]\n')
    with pytest.raises(InputError, match=r"sweep.toml: byte 12: not UTF-8 text \(sweep files are UTF-8\)"):
        load_sweep(path)


def test_cli_rejects_a_malformed_file_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrows = []\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and ": grid.rows: " in captured.err and captured.err.count("\n") == 1
    assert not out.exists()  # nothing started: no directory, no cluster


def test_cli_rejects_an_unknown_model_before_starting_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 'models = ["deit_smal_patch16_224"]\n[grid]\ntarget = ["zcu102"]\n')
    started = time.perf_counter()
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "'models'" in err and "deit_smal_patch16_224" in err and err.count("\n") == 1
    assert not list((tmp_path / "out").glob("part-*"))
    assert time.perf_counter() - started < 30


# ---------------------------------------------------------------------------------------------------------
# Running


def test_sweep_writes_one_row_per_point_and_rerun_skips_them(tmp_path: Path, client: Any) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    workloads = {"tiny": tiny_workload()}
    summary = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    assert (summary.points, summary.done, summary.skipped, summary.errors) == (16, 16, 0, 0)
    assert summary.parts == len(list(out.glob("part-*.parquet"))) == 6  # ceil(16 / 3)
    frame = read_results(out)
    assert sorted(frame["point_id"]) == sorted(p.point_id for p in spec.points)
    expected = {
        p.point_id: fake_evaluate(workloads["tiny"], configure_target(spec.targets[p.target], p), p)["cycles"]
        for p in spec.points
    }
    assert dict(zip(frame["point_id"], frame["cycles"], strict=True)) == expected
    assert not list(out.glob(".*tmp"))
    from allocator.sweep.pareto import pareto_mask

    assert frame["pareto"].tolist() == pareto_mask(frame.drop(columns="pareto")).tolist()
    assert summary.pareto == int(frame["pareto"].sum()) > 0

    again = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    assert (again.done, again.skipped, again.parts) == (0, 16, 0)
    assert len(read_results(out)) == 16


def test_failed_batch_keeps_the_others_and_rerun_completes(tmp_path: Path, client: Any) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    workloads = {"tiny": tiny_workload()}
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(spec, out, client=client, evaluate=failing_evaluate, workloads=workloads, progress=False)
    kept = finished_ids(out)
    bad = [p.point_id for p in spec.points if p.rows == 32 and p.dataflow == "ws" and p.target == "kv260"]
    assert 0 < len(kept) < 16 and not kept & set(bad)

    summary = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    assert summary.skipped == len(kept) and summary.done == 16 - len(kept)
    frame = read_results(out)
    assert frame["point_id"].is_unique and set(frame["point_id"]) == {p.point_id for p in spec.points}


@pytest.mark.slow
def test_cli_text_summary_and_rerun(tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, REAL)
    argv = ["sweep", str(path), "--scheduler", client.scheduler.address, "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("8 points: 8 evaluated, 0 already done, 0 with errors; ")
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("8 points: 0 evaluated, 8 already done")
    assert main([*argv, "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err


def budget_sweep(
    tmp_path: Path,
    client: Any,
    workloads: dict[str, Workload],
    axis: str,
    budgets: list[float],
    sensitivity: str | None = None,
) -> Any:
    """Allocate mixbit_vit_test on an 8-row zcu102 at each of three ``axis`` budgets (tightest first); the
    results sorted by that limit, after checking that the first is infeasible and the other two optimal."""
    line = "" if sensitivity is None else f'sensitivity = "{sensitivity}"\n'
    text = f"""
models = ["mixbit_vit_test"]
allocate = true
{line}choices = [[8, 8], [4, 8], [4, 4], [2, 4]]

[grid]
target = ["zcu102"]
rows = [8]
{axis} = {budgets}
"""
    spec = load_sweep(write(tmp_path, text))
    summary = run_sweep(spec, tmp_path / "out", client=client, workloads=workloads, progress=False)
    assert (summary.done, summary.errors) == (3, 0)
    frame = read_results(tmp_path / "out").sort_values(f"limit_{axis}")
    assert list(frame["status"]) == ["infeasible", "optimal", "optimal"]
    return frame


@pytest.mark.slow
def test_allocation_sweep_meets_each_latency_budget(tmp_path: Path, client: Any) -> None:
    from allocator.sweep.run import build_workloads
    from sim import load_target
    from sim.simulate import simulate

    workloads = build_workloads(["mixbit_vit_test"])
    zcu102 = load_target("zcu102")
    fastest = simulate(workloads["mixbit_vit_test"], zcu102, bits=(2, 4), rows=8).latency_ms
    slowest = simulate(workloads["mixbit_vit_test"], zcu102, bits=(8, 8), rows=8).latency_ms
    budgets = [fastest / 2, (fastest + slowest) / 2, slowest * 2]
    frame = budget_sweep(tmp_path, client, workloads, "latency_ms", budgets)
    tight, loose = frame.iloc[1], frame.iloc[2]
    assert tight["ilp_latency_ms"] <= budgets[1] * (1 + 1e-9) < loose["ilp_latency_ms"]
    assert tight["objective"] > loose["objective"]  # a tighter budget costs sensitivity
    assert (loose["mean_wbits"], loose["mean_abits"]) == (8, 8)
    assert json.loads(tight["plan"])["layers"].keys() == {g.name for g in workloads["mixbit_vit_test"].gemms}


@pytest.mark.slow
def test_allocation_sweep_meets_each_energy_budget(tmp_path: Path, client: Any) -> None:
    """``energy_mj`` is a budget axis: each point's plan is the minimum-Ω one within its energy (the DP,
    equal to the ILP's), energy is recorded, and the ids of points without it are those of earlier releases."""
    from allocator.ilp.model import Limits, allocate
    from allocator.ilp.problem import build_problem
    from allocator.sweep import proxy_sensitivity
    from allocator.sweep.run import build_workloads
    from sim import load_target

    workloads = build_workloads(["mixbit_vit_test"])
    workload, zcu102 = workloads["mixbit_vit_test"], load_target("zcu102").replace_array(rows=8)
    pairs = [(8, 8), (4, 8), (4, 4), (2, 4)]
    problem = build_problem(workload, zcu102, proxy_sensitivity(workload, pairs), pairs)
    least = problem.fixed_energy_mj + sum(float(problem.energy_mj[r].min()) for r in problem.choice_rows)
    most = problem.fixed_energy_mj + sum(float(problem.energy_mj[r].max()) for r in problem.choice_rows)
    budgets = [least * 0.9, (least + most) / 2, most * 2]
    frame = budget_sweep(tmp_path, client, workloads, "energy_mj", budgets, sensitivity="proxy")
    assert "least-energy plan takes" in frame.iloc[0]["message"]
    for row, budget in zip(frame.itertuples(), budgets, strict=True):
        if row.status == "optimal":
            assert row.energy_mj <= budget * (1 + 1e-9) and row.solver == "dp"
            assert row.objective == pytest.approx(allocate(problem, Limits(energy_mj=budget)).objective, rel=1e-9)
    assert frame.iloc[1]["objective"] > frame.iloc[2]["objective"]  # a tighter budget costs sensitivity


def test_points_the_simulator_rejects_are_stored_with_their_error(tmp_path: Path, client: Any) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    workloads = {"tiny": tiny_workload()}
    summary = run_sweep(spec, out, client=client, evaluate=rejecting_evaluate, workloads=workloads, progress=False)
    assert (summary.done, summary.errors) == (16, 8)
    frame = read_results(out)
    rejected = frame[frame["rows"] == 32]
    assert set(rejected["error"]) == {"rows=32: rejected by the simulator"} and rejected["cycles"].isna().all()
    assert (frame[frame["rows"] == 16]["error"] == "").all()
    again = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    assert again.done == 0  # an error is a result, not a gap to refill


def test_sensitivity_table_is_checked_before_any_work(tmp_path: Path) -> None:
    text = 'models = ["tiny"]\nallocate = true\nsensitivity = "scores.csv"\n[grid]\ntarget = ["zcu102"]\n'
    with pytest.raises(InputError, match=r"scores\.csv does not exist"):
        load_sweep(write(tmp_path, text))
    (tmp_path / "scores.csv").write_text("layer,wbits,sensitivity\nfc1,8,0.1\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) abits"):
        load_sweep(write(tmp_path, text))
    (tmp_path / "scores.csv").write_text("layer,wbits,abits,sensitivity\nfc1,8,8,0.1\n")
    spec = load_sweep(write(tmp_path, text))
    assert spec.points[0].sensitivity == str((tmp_path / "scores.csv").resolve())
    assert (spec.points[0].wbits, spec.points[0].abits) == (0, 0)  # the ILP picks the bits


def test_proxy_sensitivity_falls_with_bits_and_grows_with_size() -> None:
    from allocator.sweep.run import proxy_sensitivity

    scores = proxy_sensitivity(tiny_workload(), [(8, 8), (4, 8), (4, 4)]).set_index(["layer", "wbits", "abits"])
    fc1 = scores["sensitivity"].xs("fc1")
    assert fc1[(8, 8)] < fc1[(4, 8)] < fc1[(4, 4)]
    assert fc1[(4, 8)] == pytest.approx(128 * 4.0**-4 + 4 * 16 * 4.0**-8)  # weights, then the M×K input
    assert scores["sensitivity"].xs("fc2")[(4, 8)] == pytest.approx(
        8 * 16 * 4.0**-4 + 4 * 8 * 4.0**-8
    )  # no weight_params: K×N


KILLED_SCRIPT = """
import sys, time
from distributed import Client, LocalCluster
from allocator.sweep.run import DesignPoint, SweepSpec, run_sweep
from sim.workload import Gemm, Workload
from test_sweep import board

def slow(workload, target, point):
    time.sleep(float(sys.argv[2]))
    return {"cycles": point.rows * point.cols}

points = tuple(
    DesignPoint("tiny", "board", rows, 16, "os", 200.0, 10.0, 1024, 1024, 1024) for rows in range(1, 13)
)
spec = SweepSpec(Path("k.toml"), "killed", ("tiny",), points, {"board": board()}, False, "", (), 2)
workload = Workload.from_ops("tiny", [Gemm("fc", "fc1", 4, 8, 16)])
if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        print(run_sweep(spec, sys.argv[1], client=client, evaluate=slow, workloads={"tiny": workload}).done)
"""


def test_killed_sweep_reruns_to_completion_without_duplicates(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text("from pathlib import Path\n" + KILLED_SCRIPT)
    out = tmp_path / "out"
    tests = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (REPO, tests, Path(__file__).parent)))}
    proc = subprocess.Popen([PYTHON, str(script), str(out), "0.3"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = finished_ids(out)
    assert 0 < len(kept) < 12  # killed half way: at least one part landed, not all

    rerun = subprocess.run(
        [PYTHON, str(script), str(out), "0"], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert int(rerun.stdout.strip()) == 12 - len(kept)
    frame = read_results(out)
    assert len(frame) == 12 and frame["point_id"].is_unique and kept <= set(frame["point_id"])
    assert sorted(frame["rows"]) == list(range(1, 13))


@pytest.mark.slow
def test_cli_sweep_on_a_separately_started_scheduler_matches_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dask scheduler`` and ``dask worker`` as their own processes; the CLI runs the real simulator there."""
    path = write(tmp_path, REAL)
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            *DASK_SCHEDULER,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen(
            [PYTHON, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"],
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        out = tmp_path / "out"
        assert main(["sweep", str(path), "--scheduler", address, "--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)  # the one JSON object is all of stdout
        assert summary["scheduler"] == address and (summary["points"], summary["done"], summary["errors"]) == (8, 8, 0)
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    from allocator import workload_from_model
    from sim import load_target
    from sim.simulate import simulate

    frame = read_results(out)
    assert len(frame) == 8 and frame["point_id"].is_unique
    workload = workload_from_model("mixbit_vit_test")
    for row in frame.itertuples():
        direct = simulate(workload, load_target(row.target), bits=(row.wbits, row.abits), rows=row.rows)
        assert (row.cycles, row.latency_ms, row.fits) == (direct.cycles, pytest.approx(direct.latency_ms), direct.fits)


def test_unreachable_scheduler_is_a_user_error(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    with pytest.raises(InputError, match="--scheduler"):
        run_sweep(
            spec,
            tmp_path / "out",
            scheduler="tcp://127.0.0.1:9",
            evaluate=fake_evaluate,
            workloads={"tiny": tiny_workload()},
            progress=False,
            connect_timeout_s=1.0,
        )


def test_spec_is_a_plain_value() -> None:
    point = DesignPoint("tiny", "board", 8, 8, "os", 200.0, 10.0, 1, 1, 1)
    spec = SweepSpec(Path("s.toml"), "s", ("tiny",), (point,), {"board": board()}, False, "", (), None)
    assert spec.points[0].point_id == DesignPoint("tiny", "board", 8, 8, "os", 200.0, 10.0, 1, 1, 1).point_id
    assert spec.points[0].point_id != DesignPoint("tiny", "board", 8, 8, "ws", 200.0, 10.0, 1, 1, 1).point_id
    assert point.to_row()["limit_latency_ms"] != point.to_row()["limit_latency_ms"]  # an absent budget is NaN


# ---------------------------------------------------------------------------------------------------------
# Hardening (issue 15 items 2, 8, 18, 19, 21)


def test_a_second_sweep_on_a_locked_out_fails_at_once(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from allocator.sweep.dataset import Dataset

    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    out.mkdir()
    with Dataset(out).lock():
        with pytest.raises(InputError, match="in use by another mixbit sweep"):
            run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads={"tiny": tiny_workload()})
        assert main(["sweep", str(spec.path), "--out", str(out), "--json"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out: ") and "in use by another mixbit sweep" in err and err.count("\n") == 1
    assert not list(out.glob("part-*")) and not (out / "_sweep.json").exists()
    summary = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads={"tiny": tiny_workload()})
    assert summary.done == 16  # the lock went with its holder


@pytest.mark.slow  # two real sweep processes: about 10 s
def test_two_real_sweep_processes_on_one_out(tmp_path: Path) -> None:
    """Item 2 end to end: while one `mixbit sweep` runs, a second on the same --out exits 2 at once with one line
    and stores nothing; the first is not disturbed, and its rows are one per point."""
    rows = ", ".join(str(v) for v in range(1, 51))
    path = write(tmp_path, f'models = ["mixbit_vit_test"]\npoints_per_part = 500\n[grid]\ntarget = ["zcu102"]\n'
                           f'rows = [{rows}]\ncols = [{rows}]\n')  # fmt: skip
    out = tmp_path / "out"
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"  # as `mixbit`
    argv = [PYTHON, "-c", code, "sweep", str(path), "--out", str(out), "--workers", "1", "--json"]
    first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "_sweep.lock").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first sweep ended before the second started"
    began = time.perf_counter()
    second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    second_s = time.perf_counter() - began
    held = first.poll() is None  # the first still held the lock when the second gave up
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert held and (second.returncode, second.stdout) == (2, "")
    assert second.stderr.splitlines() == [
        f"error: --out: {out} is in use by another mixbit sweep (it holds {out / '_sweep.lock'}); wait for it to "
        "finish or use another --out"
    ]
    assert second_s < 15  # at once: the imports and the sweep file, no cluster, no waiting for the lock
    assert json.loads(stdout)["done"] == 2500
    frame = read_results(out)
    assert len(frame) == 2500 and frame["point_id"].is_unique
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == ["_pareto.parquet", "_sweep.json"]


def test_read_results_keeps_one_row_per_point_id(tmp_path: Path, client: Any) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads={"tiny": tiny_workload()}, progress=False)
    part = sorted(out.glob("part-*.parquet"))[0]
    (out / "part-copy.parquet").write_bytes(part.read_bytes())  # as two unlocked runs once stored every point twice
    frame = read_results(out)
    assert len(frame) == 16 and frame["point_id"].is_unique


def test_a_different_sweep_into_an_existing_out_is_refused(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "out"
    workloads = {"tiny": tiny_workload()}
    run_sweep(load_sweep(write(tmp_path, GRID)), out, client=client, evaluate=fake_evaluate, workloads=workloads)
    other = load_sweep(write(tmp_path, GRID.replace("rows = [16, 32]", "rows = [16, 64]"), "other.toml"))
    with pytest.raises(InputError, match=r"holds the results of a different sweep \(.*sweep\.toml, 16 points\)"):
        run_sweep(other, out, client=client, evaluate=fake_evaluate, workloads=workloads)
    same = load_sweep(write(tmp_path, GRID, "copy.toml"))  # the same points from another file: a rerun
    assert run_sweep(same, out, client=client, evaluate=fake_evaluate, workloads=workloads).skipped == 16


def test_cli_refuses_a_grid_above_the_ceiling_without_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = ", ".join(str(v) for v in range(1, 1001))
    path = write(tmp_path, f'models = ["tiny"]\n[grid]\ntarget = ["zcu102"]\nrows = [{values}]\ncols = [{values}]\n'
                           f'clock_mhz = [{", ".join(f"{v}.0" for v in range(100, 1100))}]\n')  # fmt: skip
    started = time.perf_counter()
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1,000,000,000 design points" in err and "--yes" in err
    assert time.perf_counter() - started < 5 and not (tmp_path / "out").exists()


def test_yes_runs_a_grid_above_the_ceiling_chunk_by_chunk(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: ``--yes`` overrides the ceiling (patched down to 10 points here), and the run streams the grid in
    parts of ``points_per_part``: the client never builds more points than one part at a time."""
    import allocator.sweep.run as sweep_run
    from allocator.sweep.grid import Points

    path = write(tmp_path, 'models = ["mixbit_vit_test"]\npoints_per_part = 4\n[grid]\ntarget = ["zcu102", "kv260"]\n'
                           'rows = [8, 16]\ncols = [8, 16]\nbits = [[8, 8], [4, 4]]\n')  # fmt: skip
    monkeypatch.setattr(sweep_run, "MAX_POINTS", 10)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"error: {path}: 16 design points is above the ceiling of 10; pass --yes (load_sweep(max_points=None)) to "
        "run it anyway"
    ]
    assert not out.exists()

    built: list[int] = []  # sizes of the batches of points made in this (the client) process
    real_slice, real_columns = Points.slice_points, Points.columns

    def counted_slice(self: Points, indices: Any) -> list[Any]:
        built.append(len(indices))
        return real_slice(self, indices)

    def counted_columns(self: Points, indices: Any) -> dict[str, Any]:
        built.append(len(indices))
        return real_columns(self, indices)

    def whole_grid(self: Points) -> Iterator[Any]:
        raise AssertionError("the whole grid was iterated")

    monkeypatch.setattr(Points, "slice_points", counted_slice)
    monkeypatch.setattr(Points, "columns", counted_columns)
    monkeypatch.setattr(Points, "__iter__", whole_grid)
    argv = ["sweep", str(path), "--out", str(out), "--json", "--yes", "--scheduler", client.scheduler.address]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["points"], summary["done"], summary["parts"]) == (16, 16, 4)
    assert len(read_results(out)) == 16 and len(list(out.glob("part-*.parquet"))) == 4
    assert max(built, default=0) <= 4  # one part's points at most, never the grid


@pytest.mark.parametrize(
    ("csv", "reason"),
    [
        ("layer,wbits,abits,sensitivity\nfc1,8,8,lots\n", "sensitivity='lots' is not a finite number"),
        ("layer,wbits,abits,sensitivity\nfc1,8,8,nan\n", "is not a finite number >= 0"),
        ("layer,wbits,abits,sensitivity\nfc1,8,8,-1\n", "sensitivity=-1"),
        ("layer,wbits,abits,sensitivity\nfc1,eight,8,1\n", "wbits='eight' is not an integer"),
        ("layer,wbits,abits,sensitivity\nfc1,8,8,1\nfc1,8,8,2\n", "appears twice"),
        ("layer,wbits,abits,sensitivity\n", "no rows"),
    ],
)
def test_garbage_sensitivity_tables_fail_validation_up_front(tmp_path: Path, csv: str, reason: str) -> None:
    (tmp_path / "scores.csv").write_text(csv)
    text = 'models = ["tiny"]\nallocate = true\nsensitivity = "scores.csv"\n[grid]\ntarget = ["zcu102"]\n'
    with pytest.raises(InputError, match=": sensitivity: ") as raised:
        load_sweep(write(tmp_path, text))
    assert reason in str(raised.value) and "\n" not in str(raised.value)


def test_a_binary_sensitivity_table_fails_up_front(tmp_path: Path) -> None:
    (tmp_path / "scores.csv").write_bytes(bytes(range(256)) * 8)
    text = 'models = ["tiny"]\nallocate = true\nsensitivity = "scores.csv"\n[grid]\ntarget = ["zcu102"]\n'
    with pytest.raises(InputError, match=": sensitivity: "):
        load_sweep(write(tmp_path, text))


def test_sensitivity_for_other_layers_fails_before_any_worker_runs(tmp_path: Path, client: Any) -> None:
    (tmp_path / "scores.csv").write_text("layer,wbits,abits,sensitivity\nfc1,8,8,1\nfc9,8,8,1\n")
    text = 'models = ["tiny"]\nallocate = true\nsensitivity = "scores.csv"\nchoices = [[8, 8]]\n'
    text += '[grid]\ntarget = ["zcu102"]\n'
    spec = load_sweep(write(tmp_path, text))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="layer 'fc9' is not a GEMM of 'tiny'"):
        run_sweep(spec, out, client=client, workloads={"tiny": tiny_workload()}, progress=False)
    assert not out.exists()  # nothing stored: no directory, no _sweep.json


SCORES_SWEEP = 'models = ["mixbit_vit_test"]\nallocate = true\nsensitivity = "scores.csv"\nchoices = [[8, 8]]\n'
SCORES_SWEEP += '[grid]\ntarget = ["zcu102"]\n'


@pytest.mark.parametrize(
    ("sweep", "scores", "needles"),
    [
        (bytes(range(256)) * 4, None, ["not UTF-8"]),
        (b"\xef\xbb\xbf" + GRID.encode(), None, ["byte-order mark"]),
        (SCORES_SWEEP.encode(), "layer,wbits,abits,sensitivity\nfc1,8,8,lots\n", [": sensitivity: ", "'lots'"]),
        (
            SCORES_SWEEP.encode(),
            "layer,wbits,abits,sensitivity\nfc1,8,8,1\nfc2,8,8,1,2,3\n",
            [": sensitivity: ", "Error tokenizing data"],
        ),
        (SCORES_SWEEP.encode(), bytes(range(256)).decode("latin-1"), [": sensitivity: "]),
        # found late (after the cluster starts and the workload is built): still one line, in text mode too
        (SCORES_SWEEP.encode(), "layer,wbits,abits,sensitivity\nfc9,8,8,1\n", ["layer 'fc9' is not a GEMM of"]),
    ],
    ids=["binary sweep file", "sweep BOM", "garbage score", "ragged csv", "binary csv", "unknown layer"],
)
@pytest.mark.parametrize("mode", ["--json", "text"])
def test_bad_sweep_files_through_the_cli(
    tmp_path: Path,
    client: Any,
    sweep: bytes,
    scores: str | None,
    needles: list[str],
    mode: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Items 12, 18, 23 and 24 through the CLI: exit 2, one error line naming the file, nothing on stdout, no
    --out created (the library tests assert the InputError only)."""
    path = tmp_path / "sweep.toml"
    path.write_bytes(sweep)
    if scores is not None:
        (tmp_path / "scores.csv").write_text(scores, encoding="latin-1")
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--scheduler", client.scheduler.address]
    assert main([*argv, *([mode] if mode == "--json" else [])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: {path}: ") and all(needle in line for needle in needles), line
    assert not out.exists()


def test_a_truncated_part_is_set_aside_and_its_points_recomputed(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_sweep(write(tmp_path, GRID))
    out = tmp_path / "out"
    workloads = {"tiny": tiny_workload()}
    run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    part = sorted(out.glob("part-*.parquet"))[0]
    lost = len(read_results(out)) - 16 + len(pytest.importorskip("pyarrow.parquet").read_table(part))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    capsys.readouterr()
    summary = run_sweep(spec, out, client=client, evaluate=fake_evaluate, workloads=workloads, progress=False)
    err = capsys.readouterr().err
    assert f"warning: {part}: unreadable parquet part" in err and "recomputed" in err
    assert (summary.done, summary.skipped) == (lost, 16 - lost)
    frame = read_results(out)
    assert len(frame) == 16 and frame["point_id"].is_unique
    assert (out / f"_bad-{part.name}").exists()


def test_a_failed_sweep_leaves_no_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GRID.replace('models = ["tiny"]', 'models = ["no_such_model_anywhere"]'))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    assert "no_such_model_anywhere" in capsys.readouterr().err
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    spec = load_sweep(write(tmp_path, GRID))
    with pytest.raises(InputError, match="--scheduler"):
        run_sweep(spec, existing, scheduler="tcp://127.0.0.1:9", evaluate=fake_evaluate,
                  workloads={"tiny": tiny_workload()}, progress=False, connect_timeout_s=1.0)  # fmt: skip
    assert existing.is_dir() and list(existing.iterdir()) == []  # the user's directory stays, and stays empty


@pytest.mark.parametrize("mode", ["--json", "text"])
def test_cli_unreachable_scheduler_into_a_fresh_out(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 21 through the CLI: exit 2, one line naming --scheduler, and the new --out is not created."""
    import allocator.sweep.run as sweep_run

    real_cluster = sweep_run._cluster
    monkeypatch.setattr(  # a 1 s connect timeout instead of 10 s; the path to the error is the CLI's own
        sweep_run,
        "_cluster",
        lambda client, scheduler, workers, timeout_s: real_cluster(client, scheduler, workers, 1.0),
    )
    path = write(tmp_path, REAL)
    out = tmp_path / "fresh"
    argv = ["sweep", str(path), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]
    assert main([*argv, *([mode] if mode == "--json" else [])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: --scheduler: cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


def test_cli_unknown_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GRID.replace('models = ["tiny"]', 'models = ["no_such_model_anywhere"]'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and "no_such_model_anywhere" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "parts"), [("--json", False), ("text", True)])
def test_ctrl_c_to_the_process_group_prints_one_error_line(tmp_path: Path, mode: str, parts: bool) -> None:
    """Item 19: Ctrl-C while workers simulate, before any part is stored (--json) and after some are (text mode).
    Stderr is the one `error: interrupted` line besides the progress bar's lines (tqdm, which a terminal redraws
    in place); nothing half-written is left: no lock, no temporary file, only whole parts and their manifest."""
    rows = ", ".join(str(v) for v in range(1, 101))
    # 2.4 M points: minutes even for the batched simulator, so the interrupt always lands mid-sweep
    clocks = ", ".join(f"{100.0 + 10 * i}" for i in range(40))
    path = write(tmp_path, f'models = ["mixbit_vit_test"]\n{"points_per_part = 200" if parts else ""}\n[grid]\n'
                           f'target = ["zcu102", "kv260"]\nrows = [{rows}]\ncols = [{rows}]\n'
                           f'clock_mhz = [{clocks}]\ndataflow = ["os", "ws", "is"]\n')  # fmt: skip
    out = tmp_path / "out"
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"  # as `mixbit`
    proc = subprocess.Popen(
        [PYTHON, "-c", code, "sweep", str(path), "--out", str(out), *([mode] if mode == "--json" else [])],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.txt").open("w"),
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    # the progress bar starts once the cluster is up: a Ctrl-C while worker processes spawn is lost (SIGINT is
    # ignored then, so that the workers inherit the ignore; see allocator/sweep/run.py _cluster)
    while "sweep:" not in (tmp_path / "stderr.txt").read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if parts:
        while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(0.5)  # the workers are simulating
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    stdout, _ = proc.communicate(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130
    assert stdout == ""
    progress = re.compile(r"sweep: +\d+%\|")  # tqdm's bar: "sweep:  12%|█▏   | 1200/240000 [...]"
    assert [line for line in stderr.splitlines() if line.strip() and not progress.match(line)] == [
        "error: interrupted"
    ], stderr
    assert stderr.rstrip("\n").splitlines()[-1] == "error: interrupted"
    if out.exists():  # parts were stored before the interrupt (always in text mode; the sweep is fast now)
        names = sorted(p.name for p in out.iterdir())
        stored = [name for name in names if name.startswith("part-") and name.endswith(".parquet")]
        assert stored and names == sorted(["_sweep.json", *stored])  # no _sweep.lock, no .part-*.tmp
        assert read_results(out)["point_id"].is_unique
    else:
        assert not parts  # nothing stored: no folder, manifest or lock left
