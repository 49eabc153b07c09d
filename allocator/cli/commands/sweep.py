"""`mixbit sweep`: design-space sweep on Dask (a LocalCluster unless --scheduler names one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from allocator.cli.args import add_json_argument, bounded_int

MAX_WORKERS = 4096
"""Most LocalCluster worker processes; far above the cores of one machine."""

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="design-space sweep on Dask")
    parser.add_argument("sweep_file", metavar="SWEEP.toml", help="models and a grid or list of design points")
    parser.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="an existing Dask scheduler (tcp://host:port); start one with `dask scheduler` and workers on each "
        "machine with `dask worker tcp://host:port --nthreads 1 --nworkers N` (mixbit installed there too; "
        "--out must be on this machine)",
    )
    parser.add_argument("--out", metavar="DIR", help="parquet dataset directory (default: ./<sweep file stem>.parquet)")
    parser.add_argument(
        "--workers", type=bounded_int(1, MAX_WORKERS), metavar="N", help="LocalCluster worker processes (default: CPUs)"
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="run a sweep above the ceiling on design points (10 million, allocator.sweep.run.MAX_POINTS; points are "
        "counted before anything is expanded)",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="when the sweep is complete, write <out>/_pareto.png and a self-contained, filterable "
        "<out>/_pareto.html (latency vs Ω, colour board, size DSP)",
    )
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json
    from allocator.outputs import check_writable_dir
    from allocator.sweep.run import MAX_POINTS, load_sweep, run_sweep
    from sim.errors import InputError

    if args.workers is not None and args.scheduler:
        raise InputError("--workers: applies to the LocalCluster only, not with --scheduler")
    spec = load_sweep(args.sweep_file, max_points=None if args.yes else MAX_POINTS)
    out = args.out if args.out is not None else Path.cwd() / f"{Path(args.sweep_file).stem}.parquet"
    out = check_writable_dir(out, flag="--out")  # '' or an unusable place fails now, before the cluster starts
    summary = run_sweep(spec, out, scheduler=args.scheduler, workers=args.workers)
    result = summary.to_json()
    if args.plot:
        from allocator.sweep.dataset import read_results
        from allocator.sweep.plots import pareto_html, pareto_png

        frame = read_results(out)
        result["plots"] = [
            str(pareto_png(frame, out / "_pareto.png", name=spec.name)),
            str(pareto_html(frame, out / "_pareto.html", name=spec.name)),
        ]
    if args.json:
        emit_json(result)
    else:
        print(
            f"{summary.points} points: {summary.done} evaluated, {summary.skipped} already done, "
            f"{summary.errors} with errors; {summary.parts} new parts in {summary.out} ({summary.wall_s:.1f} s)"
        )
        for plot in result.get("plots", []):
            print(f"wrote {plot}")
    return 0
