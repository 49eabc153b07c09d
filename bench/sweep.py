"""Benchmark: DeiT-S design sweeps at scale (issue 18), all measured in one run on this machine.

1. Simulation only, ``mixbit sweep`` end to end in a fresh process (LocalCluster, one single-threaded worker
   process per core), peak memory summed over the process and its Dask workers:
   - examples/sweep_deit_small_1m.toml (1,000,000 points) with this code;
   - examples/sweep_deit_small_100k.toml (100,000 points) with the code of commit a7490e1 (before batching),
     from a separate checkout (``git worktree``) in the same run;
   - the same 100,000 points with this code.
2. Kill and resume at both sizes: start the sweep, SIGKILL its process group once parts have landed, rerun;
   every point stored exactly once (point_index 0..N-1, ids unique).
3. Co-design: examples/sweep_codesign_deit_small.toml (10,000 points, minimum-Ω plan per latency budget).
4. The DP answers checked against a cold ILP (HiGHS, built here from the problem's arrays, independent of the DP
   and of python-mip) on 500 random co-design points: the same optimum.
5. Scale-out: the 100,000-point sweep on a separately started ``dask scheduler`` with 1 and then 2
   ``dask worker`` processes.

Writes bench/results/sweep.json. Goals (issue 18): 1M points <= 120 s (>= 8,300 points/s) at <= 2 GB peak;
10,000 co-design points <= 300 s. The machine is shared: the load average before and after is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python bench/sweep.py` puts bench/ first on sys.path, where bench/allocator.py would shadow the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
EXAMPLES = ROOT / "examples"
SWEEP_1M = EXAMPLES / "sweep_deit_small_1m.toml"
SWEEP_100K = EXAMPLES / "sweep_deit_small_100k.toml"
CODESIGN = EXAMPLES / "sweep_codesign_deit_small.toml"
RESULT = ROOT / "bench" / "results" / "sweep.json"
BASELINE_COMMIT = "a7490e1"
GOAL_1M_S = 120.0
GOAL_PEAK_MB = 2048.0
GOAL_CODESIGN_S = 300.0
CHECK_POINTS = 500
CHECK_BUDGET_S = 600.0  # the cold ILP check stops after this long (the points checked by then are reported)


class PeakMemory:
    """Samples the summed RSS (MB) of a process and all its descendants every 0.1 s; ``peak_mb`` is the largest."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                total = 0
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                self.peak_mb = max(self.peak_mb, total / 2**20)
            except psutil.Error:
                return
            self._stop.wait(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def cli_sweep(sweep: Path, out: Path, *, cwd: Path = ROOT, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``mixbit sweep --json`` in a fresh process (code from ``cwd``): its summary, wall s and peak MB."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    # before the layering commit (5589e2a) the command line was the module allocator/cli.py
    module = "allocator.cli.main" if (cwd / "allocator" / "cli" / "main.py").exists() else "allocator.cli"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "sweep", str(sweep), "--out", str(out), "--json", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = PeakMemory(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    peak = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"sweep {sweep.name} failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout)
    return {
        "process_wall_s": wall,
        "peak_rss_mb": peak,
        "points_per_s": summary["done"] / wall if wall > 0 else None,
        **summary,
    }


def check_rows(out: Path, total: int) -> dict[str, Any]:
    """Every point index 0..total-1 stored once, and ids unique."""
    import pyarrow.parquet as pq

    indices: list[Any] = []
    ids: list[Any] = []
    for part in sorted(out.glob("part-*.parquet")):
        table = pq.read_table(part, columns=["point_index", "point_id"])
        indices.append(table.column("point_index").to_numpy())
        ids.append(table.column("point_id").to_numpy(zero_copy_only=False))
    import numpy as np

    index = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    id_array = np.concatenate(ids) if ids else np.zeros(0, object)
    return {
        "rows": len(index),
        "duplicates": len(index) - len(np.unique(index)),
        "duplicate_ids": int(len(id_array) - len(set(id_array.tolist()))),
        "lost": int(total - len(np.unique(index[(index >= 0) & (index < total)]))),
    }


def kill_and_resume(sweep: Path, out: Path, total: int, kill_after_parts: int = 2) -> dict[str, Any]:
    """SIGKILL the sweep's process group once ``kill_after_parts`` parts landed, rerun, check the rows."""
    command = [sys.executable, "-m", "allocator.cli.main", "sweep", str(sweep), "--out", str(out), "--json"]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while len(list(out.glob("part-*.parquet"))) < kill_after_parts and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask workers, as an OOM kill or a closed terminal would
    proc.wait()
    stored = check_rows(out, total)["rows"]
    rerun = cli_sweep(sweep, out)
    return {
        "killed_while_running": proc.returncode == -signal.SIGKILL,
        "stored_when_killed": stored,
        "rerun_done": rerun["done"],
        "rerun_skipped": rerun["skipped"],
        "rerun_wall_s": rerun["process_wall_s"],
        **check_rows(out, total),
    }


def baseline_checkout(work: Path) -> Path:
    """A separate checkout of the pre-batching code (its own __pycache__/numba cache)."""
    checkout = work / f"mixbit-{BASELINE_COMMIT}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), BASELINE_COMMIT],
        check=True,
        capture_output=True,
    )
    return checkout


def warm_up(cwd: Path, work: Path) -> None:
    """Compile (or load) each checkout's numba kernels once, outside the timed runs."""
    tiny = work / f"warm-{cwd.name}.toml"
    tiny.write_text('models = ["deit_small_patch16_224"]\n[grid]\ntarget = ["zcu102"]\nrows = [8, 16]\n')
    cli_sweep(tiny, work / f"warm-{cwd.name}", cwd=cwd)


def highs_objective(problem: Any, budget_cycles: float) -> tuple[str, float | None, float]:
    """Cold ILP with one latency budget, built for HiGHS from the problem's arrays: (status, objective, s)."""
    import highspy
    import numpy as np
    import scipy.sparse as sp

    start = time.perf_counter()
    n = len(problem)
    rows = []
    for choice in problem.choice_rows:
        row = np.zeros(n)
        row[choice] = 1
        rows.append(row)
    rows.append(np.asarray(problem.latency_cycles, dtype=float))
    lower = [1.0] * len(problem.choice_rows) + [-highspy.kHighsInf]
    upper = [1.0] * len(problem.choice_rows) + [budget_cycles * (1 + 1e-9)]
    matrix = sp.csc_matrix(np.vstack(rows))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, matrix.shape[0]
    lp.col_cost_ = np.asarray(problem.sensitivity, dtype=float)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_, lp.row_upper_ = np.array(lower), np.array(upper)
    a_matrix = highspy.HighsSparseMatrix()
    a_matrix.format_ = highspy.MatrixFormat.kColwise
    a_matrix.num_col_, a_matrix.num_row_ = n, matrix.shape[0]
    a_matrix.start_, a_matrix.index_, a_matrix.value_ = matrix.indptr, matrix.indices, matrix.data
    lp.a_matrix_ = a_matrix
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("mip_rel_gap", 1e-9)
    highs.setOptionValue("mip_abs_gap", 1e-12)
    highs.setOptionValue("threads", 1)
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status == highspy.HighsModelStatus.kOptimal:
        return "optimal", float(highs.getInfo().objective_function_value), time.perf_counter() - start
    if status == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None, time.perf_counter() - start
    return str(status), None, time.perf_counter() - start


def dp_against_cold_ilp(out: Path, points: int, seed: int = 0) -> dict[str, Any]:
    """``points`` random co-design points: the stored DP answer against a cold HiGHS solve of the same problem."""
    import numpy as np

    from allocator.ilp.problem import build_problem
    from allocator.sweep.run import build_workloads, configure_target, load_sweep, proxy_sensitivity, read_results

    spec = load_sweep(CODESIGN)
    frame = read_results(out).set_index("point_id")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(spec.points), size=points, replace=False).tolist())
    workloads = build_workloads(spec.models)
    problems: dict[tuple, Any] = {}
    same = differ = 0
    agree_infeasible = 0
    worst = 0.0
    ilp_s = []
    began = time.perf_counter()
    checked = 0
    for index in chosen:
        if time.perf_counter() - began > CHECK_BUDGET_S:
            break
        checked += 1
        point = spec.points[index]
        row = frame.loc[point.point_id]
        key = (point.target, point.rows, point.cols, point.dataflow)
        if key not in problems:
            target = configure_target(spec.targets[point.target], point)
            workload = workloads[point.model]
            problems[key] = build_problem(workload, target, proxy_sensitivity(workload, point.choices), point.choices)
        problem = problems[key]
        budget = problem.ms_to_cycles(point.limit_latency_ms) - problem.fixed_cycles
        status, objective, seconds = highs_objective(problem, budget)
        ilp_s.append(seconds)
        if status == "infeasible" or budget < 0:
            agree = row["status"] == "infeasible"
            agree_infeasible += agree
            same += agree
            differ += not agree
            continue
        relative = abs(float(row["objective"]) - objective) / max(abs(objective), 1e-300)
        worst = max(worst, relative)
        if row["status"] == "optimal" and relative <= 1e-9:
            same += 1
        else:
            differ += 1
    return {
        "points": points,
        "checked": checked,
        "same_optimum": same,
        "different": differ,
        "of_them_infeasible_in_both": agree_infeasible,
        "worst_relative_objective_difference": worst,
        "cold_ilp": "HiGHS (highspy), built from the problem's arrays, mip_rel_gap 1e-9, one thread",
        "cold_ilp_median_s": float(np.median(ilp_s)),
        "cold_ilp_total_s": float(np.sum(ilp_s)),
        "dp_median_solve_s": float(frame.loc[[spec.points[i].point_id for i in chosen[:checked]], "solve_s"].median()),
    }


def scale_out(work: Path) -> dict[str, Any]:
    """The 100,000-point sweep on a separately started scheduler with 1, then 2 worker processes."""
    scheduler_file = work / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    workers: list[subprocess.Popen] = []
    runs = {}
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for count in (1, 2):
            while len(workers) < count:
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "distributed.cli.dask_worker",
                            address,
                            "--nthreads",
                            "1",
                            "--no-dashboard",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        cwd=ROOT,
                    )
                )
            _wait_for_workers(address, count)
            runs[str(count)] = cli_sweep(SWEEP_100K, work / f"scale-{count}", extra=("--scheduler", address))
    finally:
        for proc in (*workers, scheduler):
            proc.terminate()
        for proc in (*workers, scheduler):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    one, two = runs["1"]["process_wall_s"], runs["2"]["process_wall_s"]
    return {"runs": runs, "speedup_2_over_1": one / two if two else None}


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=120)


def main() -> None:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mixbit-bench-sweep-"))
    result: dict[str, Any] = {
        "bench": "sweep",
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "note": "1-minute load average before and after; above the CPU count means other work shared the cores "
        "(the wall times are then inflated; compare the runs of one file side by side)",
    }
    checkout = None
    try:
        checkout = baseline_checkout(work)
        warm_up(ROOT, work)
        warm_up(checkout, work)
        print("warmed up", flush=True)
        million = cli_sweep(SWEEP_1M, work / "1m")
        print(f"1M: {million['process_wall_s']:.1f} s, {million['peak_rss_mb']:.0f} MB", flush=True)
        baseline = cli_sweep(SWEEP_100K, work / "100k-baseline", cwd=checkout)
        print(f"100k at {BASELINE_COMMIT}: {baseline['process_wall_s']:.1f} s", flush=True)
        current = cli_sweep(SWEEP_100K, work / "100k")
        print(f"100k now: {current['process_wall_s']:.1f} s", flush=True)
        rerun = cli_sweep(SWEEP_1M, work / "1m")
        shutil.rmtree(work / "1m", ignore_errors=True)
        result["simulation"] = {
            "sweep_1m": {"sweep_file": str(SWEEP_1M.relative_to(ROOT)), **million},
            "sweep_100k_baseline": {
                "sweep_file": str(SWEEP_100K.relative_to(ROOT)),
                "commit": BASELINE_COMMIT,
                **baseline,
            },
            "sweep_100k": {"sweep_file": str(SWEEP_100K.relative_to(ROOT)), **current},
            "rerun_1m_all_stored_s": rerun["process_wall_s"],
            "points_per_s_ratio_1m_now_to_100k_baseline": million["points_per_s"] / baseline["points_per_s"],
        }
        save(result)
        resume_100k = kill_and_resume(SWEEP_100K, work / "kill-100k", 100_000)
        print(f"kill+resume 100k: {resume_100k}", flush=True)
        resume_1m = kill_and_resume(SWEEP_1M, work / "kill-1m", 1_000_000, kill_after_parts=4)
        print(f"kill+resume 1M: {resume_1m}", flush=True)
        shutil.rmtree(work / "kill-1m", ignore_errors=True)
        result["kill_and_resume"] = {"100k": resume_100k, "1m": resume_1m}
        save(result)
        codesign = cli_sweep(CODESIGN, work / "codesign")
        print(f"co-design 10k: {codesign['process_wall_s']:.1f} s", flush=True)
        result["codesign"] = {"sweep_file": str(CODESIGN.relative_to(ROOT)), **codesign}
        save(result)
        result["scale_out"] = scale_out(work)
        save(result)
        print(f"scale-out: {result['scale_out']['speedup_2_over_1']:.2f}x with 2 workers", flush=True)
        check = dp_against_cold_ilp(work / "codesign", CHECK_POINTS)
        print(f"DP vs cold ILP: {check}", flush=True)
        result["codesign"]["dp_vs_cold_ilp"] = check
        save(result)
    finally:
        if checkout is not None:
            remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)]
            subprocess.run(remove, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    save(result)
    print(json.dumps(result["goals"]), f"load before {load_before[0]:.1f}, after {result['load_after'][0]:.1f}")


def save(result: dict[str, Any]) -> None:
    """Write what has been measured so far (a bench cut short still leaves its finished parts), with the goals."""
    result["load_after"] = os.getloadavg()
    result["other_work_running"] = max(result["load_before"][0], result["load_after"][0]) > (os.cpu_count() or 1)
    sim = result.get("simulation", {}).get("sweep_1m", {})
    codesign = result.get("codesign", {})
    check = codesign.get("dp_vs_cold_ilp", {})
    resume = result.get("kill_and_resume", {})
    result["goals"] = {
        "1m_wall_s_le_120": sim["process_wall_s"] <= GOAL_1M_S if sim else None,
        "1m_peak_mb_le_2048": sim["peak_rss_mb"] <= GOAL_PEAK_MB if sim else None,
        "codesign_10k_wall_s_le_300": codesign["process_wall_s"] <= GOAL_CODESIGN_S if codesign else None,
        "dp_equals_cold_ilp": (check["different"] == 0 and check["checked"] == CHECK_POINTS) if check else None,
        "resume_no_duplicate_no_loss": all(
            r["duplicates"] == 0 and r["duplicate_ids"] == 0 and r["lost"] == 0 for r in resume.values()
        )
        if resume
        else None,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
