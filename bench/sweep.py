"""Benchmark: the 1,000-point DeiT-S design sweep (examples/sweep_deit_small.toml), simulation only.

Measures, in one run on this machine:
1. ``mixbit sweep`` end to end from a fresh output directory (a new Python process, a LocalCluster of one
   single-threaded worker process per core): wall seconds, split into workload build, cluster start and the rest.
2. The same points simulated serially in this process with no Dask (the floor the sweep's overhead is measured
   against; the workload is built here once and is not counted).
3. Kill and resume on the large sweep: start it, SIGKILL the process once at least one part has landed, rerun;
   check that every point is stored exactly once and that the parts from the killed run were kept.

Writes bench/results/sweep.json. Goal from issue 9: (1) <= 60 s on this 2-core machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/sweep.py` puts bench/ first on sys.path, where bench/allocator.py would shadow the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
SWEEP = ROOT / "examples" / "sweep_deit_small.toml"
RESULT = ROOT / "bench" / "results" / "sweep.json"
GOAL_S = 60.0


def cli_sweep(out: Path) -> tuple[dict, float, float]:
    """Run ``mixbit sweep --json`` in a fresh process: its summary, wall seconds and CPU seconds.

    CPU seconds (user + system of the process and its reaped descendants, the Dask workers included) do not
    grow when other work shares the cores, so they show what the sweep costs when wall time is inflated.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "allocator.cli.main", "sweep", str(SWEEP), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout), wall, cpu


def serial_simulation() -> dict:
    """The same 1,000 points, one ``sim.simulate`` call each, in this process (workload built beforehand)."""
    import torch

    torch.set_num_threads(2)
    from allocator.sweep.run import build_workloads, configure_target, load_sweep, simulate_point

    spec = load_sweep(SWEEP)
    start = time.perf_counter()
    workloads = build_workloads(spec.models)
    workload_s = time.perf_counter() - start
    first = spec.points[0]  # compile or load the jitted kernels outside the timed loop
    simulate_point(workloads[first.model], configure_target(spec.targets[first.target], first), first)
    start = time.perf_counter()
    for point in spec.points:
        simulate_point(workloads[point.model], configure_target(spec.targets[point.target], point), point)
    loop_s = time.perf_counter() - start
    return {
        "points": len(spec.points),
        "workload_s": workload_s,
        "loop_s": loop_s,
        "ms_per_point": 1e3 * loop_s / len(spec.points),
    }


def kill_and_resume(out: Path) -> dict:
    """Kill the CLI sweep after its first part lands, rerun it, and check the rows."""
    from allocator.sweep.run import finished_ids, load_sweep, read_results

    command = [sys.executable, "-m", "allocator.cli.main", "sweep", str(SWEEP), "--out", str(out), "--json"]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask workers, as a Ctrl-C'd terminal or OOM kill would
    proc.wait()
    kept = finished_ids(out)
    summary, rerun_s, _ = cli_sweep(out)
    frame = read_results(out)
    expected = {p.point_id for p in load_sweep(SWEEP).points}
    return {
        "stored_when_killed": len(kept),
        "rerun_done": summary["done"],
        "rerun_skipped": summary["skipped"],
        "rerun_wall_s": rerun_s,
        "rows": len(frame),
        "duplicates": int(frame["point_id"].duplicated().sum()),
        "lost": len(expected - set(frame["point_id"])),
        "killed_parts_kept": kept <= set(frame["point_id"]),
    }


def main() -> None:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mixbit-bench-sweep-"))
    try:
        summary, cli_s, cli_cpu_s = cli_sweep(work / "cold")
        rerun, rerun_s, _ = cli_sweep(work / "cold")  # everything stored: only start-up and the skip check
        serial = serial_simulation()
        resume = kill_and_resume(work / "killed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    evaluate_s = summary["wall_s"] - summary["workload_s"] - summary["cluster_s"]
    result = {
        "bench": "sweep",
        "sweep_file": str(SWEEP.relative_to(ROOT)),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "load_after": load_after,
        "other_work_running": load_before[0] > (os.cpu_count() or 1),
        "note": "1-minute load average before and after; above the CPU count means other work shared the cores",
        "cli": {
            "process_wall_s": cli_s,
            "process_cpu_s": cli_cpu_s,
            **summary,
            "evaluate_and_write_s": evaluate_s,
            "points_per_s_evaluate": summary["done"] / evaluate_s if evaluate_s > 0 else None,
        },
        "rerun_all_stored": {"process_wall_s": rerun_s, "done": rerun["done"], "skipped": rerun["skipped"]},
        "serial_in_process": serial,
        "ratio_cli_wall_to_serial_loop": cli_s / serial["loop_s"],
        "ratio_cli_wall_to_serial_with_workload": cli_s / (serial["loop_s"] + serial["workload_s"]),
        "kill_and_resume": resume,
        "goal_s": GOAL_S,
        "meets_goal": cli_s <= GOAL_S,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"1,000-point DeiT-S sweep (CLI, fresh process): {cli_s:.1f} s wall (goal <= {GOAL_S:.0f} s), "
        f"{cli_cpu_s:.1f} s CPU"
    )
    print(
        f"  of which workload {summary['workload_s']:.1f} s, cluster {summary['cluster_s']:.1f} s, "
        f"evaluate+write {evaluate_s:.1f} s; {summary['parts']} parts, {summary['workers']} workers"
    )
    print(f"rerun with everything stored: {rerun_s:.1f} s, {rerun['skipped']} skipped, {rerun['done']} evaluated")
    print(
        f"serial in-process simulate: {serial['loop_s']:.2f} s for {serial['points']} points "
        f"({serial['ms_per_point']:.2f} ms/point) + {serial['workload_s']:.1f} s workload build"
    )
    print(
        f"kill and resume: {resume['stored_when_killed']} stored when killed, rerun evaluated {resume['rerun_done']}, "
        f"{resume['rows']} rows, {resume['duplicates']} duplicates, {resume['lost']} lost"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
