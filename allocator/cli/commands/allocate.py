"""`mixbit allocate`: the whole pipeline — cost table, sensitivity, ILP, quantize, evaluate, verify, report."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

from allocator.cli.args import MAX_COUNT, MAX_SEED, bounded_int, positive_float

if TYPE_CHECKING:
    from allocator.pipeline.run import PipelineResult

__all__ = ["register"]


def _bit_pair(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"[Ww](\d)[Aa](\d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected WxAy such as W4A4, got {text!r}")
    return int(match[1]), int(match[2])


MAX_PARETO_POINTS = 1000
"""Each front point is one ILP solve; more than this is a typo, not a question."""


def _act_kind(text: str) -> str:
    from quant.primitives import ACT_KINDS

    if text not in ACT_KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown activation quantizer kind {text!r}; choose from {', '.join(ACT_KINDS)}"
        )
    return text


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("allocate", help="choose per-layer bits under a budget (the whole pipeline)")
    parser.add_argument("--target", required=True, help="shipped target name or a TOML file")
    parser.add_argument("--model", required=True, help="timm model name or a testbed model (mixbit_vit_digits)")
    parser.add_argument("--data", default="digits", help="digits (scikit-learn) or an image folder (default: digits)")
    parser.add_argument("--latency-ms", type=positive_float(), help="latency limit in ms (vector-unit time included)")
    parser.add_argument("--latency-of", type=_bit_pair, metavar="WxAy", help="latency limit = that uniform plan's")
    parser.add_argument("--size-mb", type=positive_float(), help="weight size limit in MB (10^6 bytes)")
    parser.add_argument("--bops", type=positive_float(), help="limit on bit operations, in G (10^9)")
    parser.add_argument("--onchip", action="store_true", help="all weights must fit in the target's BRAM/URAM")
    parser.add_argument("--sensitivity", choices=("hessian", "fisher"), default="hessian")
    parser.add_argument(
        "--hessian-form",
        choices=("quadratic", "trace"),
        default="quadratic",
        help="Hessian score: ΔᵀHΔ with the actual quantization errors (default) or HAWQ-V2's Tr(H)/n·‖Δ‖²",
    )
    parser.add_argument(
        "--act-kind",
        type=_act_kind,
        default="uniform",
        help="activation quantizer kind: uniform (default), auto (per layer, by calibration error) or a kind name",
    )
    parser.add_argument(
        "--sensitivity-images",
        type=bounded_int(1, MAX_COUNT),
        default=128,
        help="training images the scores are taken on (default 128)",
    )
    parser.add_argument(
        "--draws", type=bounded_int(1, MAX_COUNT), default=50, help="most Hutchinson draws, trace form (default 50)"
    )
    parser.add_argument(
        "--estimator",
        choices=("auto", "exact", "random_sign"),
        default="auto",
        help="quadratic form: exact (one product per operand and bit width), random_sign, or auto (default:"
        " exact for small models, random signs for big ones; the output says which ran)",
    )
    parser.add_argument(
        "--quadratic-draws",
        type=bounded_int(1, MAX_COUNT),
        help="quadratic form: random-sign products per bit width (default 16; given alone, asks for random signs)",
    )
    parser.add_argument("--verify", action="store_true", help="check the integer-only model bit by bit")
    parser.add_argument(
        "--pareto-points",
        type=bounded_int(0, MAX_PARETO_POINTS),
        default=12,
        help=f"points on the latency–Ω front, one ILP solve each (0: none; at most {MAX_PARETO_POINTS})",
    )
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    parser.add_argument(
        "--out", help="folder for plan.json, problem.csv, report.md and plots (replaced whole; checked before work)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json
    from allocator.ilp.model import Limits
    from allocator.pipeline.run import run_pipeline
    from sim.errors import InputError

    if args.latency_ms is not None and args.latency_of is not None:
        raise InputError("give --latency-ms or --latency-of, not both")
    limits = Limits(latency_ms=args.latency_ms, size_mb=args.size_mb, bops=args.bops, onchip=args.onchip)
    log = None if args.json else (lambda message: print(f"mixbit: {message}", file=sys.stderr))
    result = run_pipeline(
        args.model,
        args.target,
        data=args.data,
        limits=limits,
        latency_of=args.latency_of,
        sensitivity=args.sensitivity,
        hessian_form=args.hessian_form,
        act_kind=args.act_kind,
        verify=args.verify,
        out=args.out,
        pareto_points=args.pareto_points,
        sensitivity_images=args.sensitivity_images,
        max_draws=args.draws,
        quadratic_draws=args.quadratic_draws,
        quadratic_estimator=args.estimator,
        seed=args.seed,
        progress=not args.json and sys.stderr.isatty(),
        log=log,
    )
    obj = result.to_json()
    if args.json:
        emit_json(obj)
    else:
        _print_summary(result)
    verify = obj.get("verify")
    return 1 if verify and verify["mismatches"] else 0


def _print_summary(result: PipelineResult) -> None:
    a = result.allocation
    p = a.predicted
    print(f"{result.model} on {result.target}: {a.status}, Ω = {a.objective:.6g}")
    print(f"{'plan':<14} {'latency ms':>11} {'size MB':>9} {'BOPs G':>9} {'Ω':>11} {'accuracy':>9} {'test loss':>10}")

    def acc(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    def loss(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    print(
        f"{'mixed (ILP)':<14} {p.latency_ms:>11.4f} {p.size_mb:>9.4f} {p.bops:>9.4f} {a.objective:>11.4g} "
        f"{acc(result.accuracy):>9} {loss(result.test_loss):>10}"
    )
    for b in result.baselines:
        print(
            f"{b.label:<14} {b.latency_ms:>11.4f} {b.size_mb:>9.4f} {b.bops:>9.4f} {b.score:>11.4g} "
            f"{acc(b.accuracy):>9} {loss(b.test_loss):>10}"
        )
    print(f"FP32 accuracy {acc(result.accuracy_fp32)}, test loss {loss(result.test_loss_fp32)}")
    print()
    print(f"{'layer':<32} {'wbits':>5} {'abits':>5}")
    for choice in a.chosen:
        print(f"{choice.layer:<32} {choice.wbits:>5} {choice.abits:>5}")
    if result.verify is not None:
        v = result.verify.to_json()
        print(f"\nverify: {v['checked']:,} elements checked, {v['mismatches']} mismatches")
    if result.outputs:
        print(f"\nwrote {', '.join(result.outputs.values())}")
