"""`mixbit simulate`: simulate a workload (a timm model, one GEMM or a SCALE-Sim topology) on a target."""

from __future__ import annotations

import argparse
import re
from typing import Any

from allocator.cli.args import add_dataflow_argument, add_json_argument, bounded_int


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
    parser.add_argument(
        "--detection",
        action="store_true",
        help="--model as a detection backbone (timm Swin or ViT) with an FPN neck at --img-size (default 800x1333, "
        "padded to a multiple of 32); the JSON adds per-stage totals",
    )
    parser.add_argument(
        "--img-size", metavar="HxW", help="input size in pixels: HxW with --detection, else one side (square)"
    )
    parser.add_argument("--wbits", type=bounded_int(1, 32), help="weight bits for every layer (default 8)")
    parser.add_argument("--abits", type=bounded_int(1, 32), help="activation bits for every layer (default 8)")
    parser.add_argument("--bits", metavar="PLAN.json", help="per-layer bit plan (what `mixbit allocate` writes)")
    parser.add_argument("--rows", type=_array_side, help="override the array's rows")
    parser.add_argument("--cols", type=_array_side, help="override the array's columns")
    add_dataflow_argument(
        parser,
        per_layer="the array switches per layer and each layer runs in its fastest (or the one a --bits plan names)",
    )
    parser.add_argument("--ideal-memory", action="store_true", help="infinite bandwidth, operands on chip")
    add_json_argument(parser)
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
    from allocator.bridge.detection import DETECTION_SIZE, detection_workload, parse_img_size

    size = parse_img_size(args.img_size) if args.img_size is not None else None
    if args.detection:
        return detection_workload(args.model, size or DETECTION_SIZE)
    if size is not None and size[0] != size[1]:
        raise InputError(f"--img-size {args.img_size!r}: a classification model takes one side; HxW needs --detection")
    return workload_from_model(args.model, None if size is None else size[0])


def _bits(args: argparse.Namespace, workload: Any, target: Any) -> Any:
    from sim.errors import InputError
    from sim.plan import plan_bits

    if args.bits is not None:
        if args.wbits is not None or args.abits is not None:
            raise InputError("--bits cannot be combined with --wbits/--abits")
        if args.detection:  # a backbone's plan: the neck at the widest bits, the classification head left out
            from allocator.bridge.detection import detector_bits

            return detector_bits(args.bits, workload, target)
        return plan_bits(args.bits, [g.name for g in workload.gemms])
    return (8 if args.wbits is None else args.wbits, 8 if args.abits is None else args.abits)


def _dataflows(args: argparse.Namespace, target: Any) -> dict[str, str] | None:
    """The per-layer dataflows a --bits plan names, on an array that switches per layer (else they are refused)."""
    from sim.errors import InputError
    from sim.plan import plan_dataflows

    if args.bits is None:
        return None
    dataflows = plan_dataflows(args.bits)
    if dataflows and not target.replace_array(dataflow=args.dataflow).accelerator.per_layer_dataflow:
        raise InputError(
            f"{args.bits}: the plan names per-layer dataflows but the array of {target.name!r} has one dataflow; "
            "add --dataflow per-layer"
        )
    return dataflows or None


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json
    from sim import load_target, simulate
    from sim.errors import InputError
    from sim.plan import plan_token_splits

    if (args.detection or args.img_size is not None) and args.model is None:
        raise InputError("--detection and --img-size take a --model (a timm Swin or ViT name)")
    target = load_target(args.target)
    workload = _workload(args)
    bits = _bits(args, workload, target)
    splits = plan_token_splits(args.bits, [g.name for g in workload.gemms]) if args.bits is not None else None
    result = simulate(
        workload,
        target,
        bits,
        rows=args.rows,
        cols=args.cols,
        dataflow=args.dataflow,
        ideal_memory=args.ideal_memory,
        layer_dataflows=_dataflows(args, target),
        token_splits=splits,
    )
    stages = _detection_stages(args, workload, result)
    if args.json:
        obj = result.to_json()
        if stages is not None:
            obj["detection"] = stages
        emit_json(obj)
    else:
        print(_report(result))
        if stages is not None:
            print(_stage_report(stages))
    return 0


def _detection_stages(args: argparse.Namespace, workload: Any, result: Any) -> dict[str, Any] | None:
    """The per-stage totals of a detection workload (None for other workloads)."""
    if not args.detection:
        return None
    from allocator.bridge.detection import DETECTION_NOTE, FPN_CHANNELS, stage_totals, workload_taps

    return {
        "workload": workload.name,
        "fpn_channels": FPN_CHANNELS,
        "stages": [s.to_json() for s in stage_totals(workload, result, workload_taps(workload))],
        "note": DETECTION_NOTE,
    }


def _stage_report(stages: dict[str, Any]) -> str:
    lines = ["", f"per stage ({stages['workload']}):"]
    for s in stages["stages"]:
        lines.append(
            f"  {s['stage']:<7} {s['cycles']:>13,} cycles {s['latency_ms']:>10.3f} ms {s['macs'] / 1e9:>8.2f} GMAC "
            f"{s['weight_bytes'] / 1e6:>7.2f} MB weights {s['bytes_read'] / 1e6:>9.1f} MB read"
        )
    lines.append(stages["note"])
    return "\n".join(lines)


def _report(result: Any) -> str:
    """A per-layer table and the totals."""
    header = (
        f"{'layer':<34} {'kind':<11} {'M':>6} {'N':>6} {'K':>6} {'w/a':>5} {'compute':>11} {'stall':>10} {'cycles':>11}"
    )
    # a target with an attention engine or further GEMM arrays: say where each GEMM runs
    engines = any(layer.m and layer.unit for layer in result.layers)
    if engines:
        header += " on"
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
        row = (
            f"{layer.name[:34]:<34} {layer.kind:<11} {shape} {bits:>5} {layer.compute_cycles:>11,} "
            f"{layer.stall_cycles:>10,} {layer.cycles:>11,}"
        )
        if engines and layer.m:
            row += f" {layer.unit or 'array'}"
        lines.append(row)
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
