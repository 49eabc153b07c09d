"""`mixbit simulate`: simulate a workload (a timm model, one GEMM or a SCALE-Sim topology) on a target."""

from __future__ import annotations

import argparse
import re
from typing import Any

from allocator.cli.args import bounded_int


def _array_side(text: str) -> int:
    from sim.target import MAX_ARRAY_SIDE  # here, not at import: --help should not load numba

    return bounded_int(1, MAX_ARRAY_SIDE)(text)


__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="simulate a workload on a target",
        description="Cycle-level simulation of a workload on a target's systolic array, layer by layer.",
    )
    parser.add_argument("--target", required=True, help="shipped target name (zcu102) or a TOML file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME", help="timm model name or testbed model")
    source.add_argument("--gemm", metavar="M,N,K", help="one GEMM of an M×K activation by a K×N weight")
    source.add_argument(
        "--topology", metavar="FILE.csv", help="SCALE-Sim topology CSV: GEMM (name, M, N, K,) or convolution format"
    )
    parser.add_argument("--wbits", type=bounded_int(1, 32), help="weight bits for every layer (default 8)")
    parser.add_argument("--abits", type=bounded_int(1, 32), help="activation bits for every layer (default 8)")
    parser.add_argument("--bits", metavar="PLAN.json", help="per-layer bit plan (what `mixbit allocate` writes)")
    parser.add_argument("--rows", type=_array_side, help="override the array's rows")
    parser.add_argument("--cols", type=_array_side, help="override the array's columns")
    parser.add_argument("--dataflow", choices=("os", "ws", "is"), help="override the array's dataflow")
    parser.add_argument("--ideal-memory", action="store_true", help="infinite bandwidth, operands on chip")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def _workload(args: argparse.Namespace) -> Any:
    from sim import Workload
    from sim.errors import InputError

    if args.gemm is not None:
        parts = [p.strip() for p in args.gemm.split(",")]
        # ASCII digits only: str.isdigit() passes '²', which int() then rejects
        if len(parts) != 3 or not all(re.fullmatch(r"[+-]?[0-9]+", p) for p in parts):
            raise InputError(f"--gemm {args.gemm!r}: expected three integers M,N,K")
        m, n, k = (int(p) for p in parts)
        for dim, value in zip("MNK", (m, n, k), strict=True):
            if value < 1:
                raise InputError(f"--gemm {args.gemm!r}: {dim}={value}; M, N and K must be at least 1")
        return Workload.from_gemm(m, n, k)
    if args.topology is not None:
        return Workload.from_topology_csv(args.topology)
    from allocator import workload_from_model

    return workload_from_model(args.model)


def _bits(args: argparse.Namespace, workload: Any) -> Any:
    from sim.errors import InputError
    from sim.plan import plan_bits

    if args.bits is not None:
        if args.wbits is not None or args.abits is not None:
            raise InputError("--bits cannot be combined with --wbits/--abits")
        return plan_bits(args.bits, [g.name for g in workload.gemms])
    return (8 if args.wbits is None else args.wbits, 8 if args.abits is None else args.abits)


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json
    from sim import load_target, simulate
    from sim.plan import plan_token_splits

    target = load_target(args.target)
    workload = _workload(args)
    bits = _bits(args, workload)
    splits = plan_token_splits(args.bits, [g.name for g in workload.gemms]) if args.bits is not None else None
    result = simulate(
        workload,
        target,
        bits,
        rows=args.rows,
        cols=args.cols,
        dataflow=args.dataflow,
        ideal_memory=args.ideal_memory,
        token_splits=splits,
    )
    if args.json:
        emit_json(result.to_json())
    else:
        print(_report(result))
    return 0


def _report(result: Any) -> str:
    """A per-layer table and the totals."""
    header = (
        f"{'layer':<34} {'kind':<11} {'M':>6} {'N':>6} {'K':>6} {'w/a':>5} {'compute':>11} {'stall':>10} {'cycles':>11}"
    )
    lines = [
        f"{result.model} on {result.target}: {result.rows}x{result.cols} {result.dataflow.upper()} array of "
        f"{result.pe} PEs at {result.clock_mhz:g} MHz" + (", ideal memory" if result.ideal_memory else ""),
        "",
        header,
        "-" * len(header),
    ]
    for layer in result.layers:
        bits = f"{layer.wbits}/{layer.abits}" if layer.wbits else "-"
        shape = f"{layer.m:>6} {layer.n:>6} {layer.k:>6}" if layer.m else f"{'':>6} {'':>6} {'':>6}"
        lines.append(
            f"{layer.name[:34]:<34} {layer.kind:<11} {shape} {bits:>5} {layer.compute_cycles:>11,} "
            f"{layer.stall_cycles:>10,} {layer.cycles:>11,}"
        )
    res = result.resources
    lines += [
        "-" * len(header),
        f"cycles        {result.cycles:,} ({result.compute_cycles:,} compute, {result.stall_cycles:,} stall)",
        f"latency       {result.latency_ms:.4f} ms",
        f"utilisation   {result.utilisation:.1%} of PE cycles",
        f"DRAM traffic  {result.bytes_read:,} bytes read, {result.bytes_written:,} bytes written",
        f"energy        {result.energy_mj:.4f} mJ dynamic (sim/energy.py)",
        f"resources     DSP {res.dsp:,}  LUT {res.lut:,}  FF {res.ff:,}  BRAM36 {res.bram36:,}  URAM {res.uram:,}",
        f"fits          {'yes' if result.fits else 'no'}",
    ]
    return "\n".join(lines)
