"""`mixbit allocate`: the whole pipeline — cost table, sensitivity, ILP, quantize, evaluate, verify, report."""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import TYPE_CHECKING, Any

from allocator.cli.args import (
    MAX_COUNT,
    add_dataflow_argument,
    add_json_argument,
    add_seed_argument,
    bounded_int,
    positive_float,
)

if TYPE_CHECKING:
    from allocator.pipeline.run import PipelineResult

__all__ = ["register"]


def _bit_pair(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"[Ww](\d)[Aa](\d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected WxAy such as W4A4, got {text!r}")
    return int(match[1]), int(match[2])


MAX_PARETO_POINTS = 1000
MAX_SYNTHETIC_IMAGES = 10_000
"""Data-free images are optimised together in memory (3×224×224 float32 with gradients and Adam state, ~2.4 MB
each at DeiT's size): 10,000 is ~24 GB, already past a workstation; more is a typo."""
MAX_SYNTHETIC_STEPS = 1_000_000
"""Adam steps per data-free stage (default 500): a million is days of CPU time; more is a typo."""
"""Each front point is one ILP solve; more than this is a typo, not a question."""


def _act_kind(text: str) -> str:
    from quant.primitives import ACT_KINDS

    if text not in ACT_KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown activation quantizer kind {text!r}; choose from {', '.join(ACT_KINDS)}"
        )
    return text


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.5,0.5,0.5, got {text!r}"
        ) from None
    if not values or len(values) > 4:
        raise argparse.ArgumentTypeError(f"expected 1 to 4 comma-separated numbers, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _stds(text: str) -> tuple[float, ...]:
    """Normalisation standard deviations: finite and above 0 (each channel is divided by its value)."""
    values = _floats(text)
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be above 0 (the input is divided by it), got {text!r}")
    return values


def add_data_arguments(parser: argparse.ArgumentParser, *, synthetic: bool = True) -> None:
    """The weights and data flags allocate, verify and train share (one meaning everywhere)."""
    kinds = "digits (scikit-learn), synthetic (data-free, PSAQ-ViT) or" if synthetic else "digits (scikit-learn) or"
    parser.add_argument(
        "--data",
        default=None,
        help=f"{kinds} an image folder: DIR/train/<class> + DIR/val/<class> (or test/), or DIR/<class> "
        "(split 75/25 by --seed); default digits unless --calib-data is given",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the model's weights: .pt/.pth (state dict, also "
        "{'model': ...}/{'state_dict': ...}) or .safetensors; default: shipped testbed or random",
    )
    parser.add_argument("--calib-data", metavar="DIR", help="images to calibrate and score on (DIR/<class>/*)")
    parser.add_argument("--eval-data", metavar="DIR", help="labelled images to evaluate on (DIR/<class>/*)")
    parser.add_argument(
        "--eval-images",
        type=bounded_int(1, MAX_COUNT),
        metavar="N",
        help="evaluate on a stratified, seeded N-image subset",
    )
    parser.add_argument("--img-size", type=int, metavar="PX", help="build the model for this image side (pixels)")
    parser.add_argument("--interpolation", help="resize interpolation (default: the model's data config, e.g. bicubic)")
    parser.add_argument(
        "--crop-pct",
        type=positive_float(1.0, what=" (a fraction of the side)"),
        help="centre-crop fraction, above 0 and at most 1 (default: the model's data config)",
    )
    parser.add_argument("--mean", type=_floats, metavar="R,G,B", help="normalisation mean (default: model's)")
    parser.add_argument("--std", type=_stds, metavar="R,G,B", help="normalisation std (default: model's)")
    if synthetic:
        parser.add_argument(
            "--synthetic-steps",
            type=bounded_int(1, MAX_SYNTHETIC_STEPS),
            metavar="N",
            help="--data synthetic: Adam steps per stage (2 stages; default 500, 50 for models over 5 M "
            "parameters on a CPU)",
        )
        parser.add_argument(
            "--synthetic-images",
            type=bounded_int(1, MAX_SYNTHETIC_IMAGES),
            default=32,
            metavar="N",
            help=f"--data synthetic: images (default 32, at most {MAX_SYNTHETIC_IMAGES:,})",
        )


def data_options(args: argparse.Namespace) -> Any:
    """``quant.inputs.DataOptions`` from the flags ``add_data_arguments`` defined."""
    from quant.errors import InputError
    from quant.inputs import DataOptions

    data = args.data if args.data is not None else (None if args.calib_data else "digits")
    steps = getattr(args, "synthetic_steps", None)  # (both bounded by their argparse types)
    images = getattr(args, "synthetic_images", 32)
    if data == "digits" and (args.calib_data or args.eval_data):
        raise InputError("--calib-data/--eval-data take image folders; leave --data digits out")
    return DataOptions(
        data=data,
        calib_data=args.calib_data,
        eval_data=args.eval_data,
        eval_images=args.eval_images,
        img_size=args.img_size,
        interpolation=args.interpolation,
        crop_pct=args.crop_pct,
        mean=args.mean,
        std=args.std,
        synthetic_steps=steps,
        synthetic_images=images,
        seed=args.seed,
    )


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("allocate", help="choose per-layer bits under a budget (the whole pipeline)")
    parser.add_argument("--target", required=True, help="shipped target name or a TOML file")
    add_dataflow_argument(
        parser,
        per_layer="the array switches per layer and the allocator picks each layer's dataflow with its bits (the "
        "plan records it)",
    )
    parser.add_argument("--model", required=True, help="timm model name or a testbed model (mixbit_vit_digits)")
    add_data_arguments(parser)
    parser.add_argument("--latency-ms", type=positive_float(), help="latency limit in ms (vector-unit time included)")
    parser.add_argument("--latency-of", type=_bit_pair, metavar="WxAy", help="latency limit = that uniform plan's")
    parser.add_argument("--size-mb", type=positive_float(), help="weight size limit in MB (10^6 bytes)")
    parser.add_argument("--bops", type=positive_float(), help="limit on bit operations, in G (10^9)")
    parser.add_argument("--onchip", action="store_true", help="all weights must fit in the target's BRAM/URAM")
    parser.add_argument(
        "--energy-mj",
        type=positive_float(),
        help="limit on dynamic energy per inference in mJ (vector operators included)",
    )
    parser.add_argument(
        "--sensitivity",
        choices=("hessian", "fisher", "fisher-type", "pmq"),
        default="hessian",
        help="hessian (default); fisher (each operand scaled by its type mean); fisher-type (LampQ's type-aware"
        " Fisher, one scale per component type); pmq (PMQ's light metric in the form of the same authors' HTQ code:"
        " mean |weight-mask gradient| on one batch x Frobenius quantization error; PMQ's own formula was not found)",
    )
    parser.add_argument(
        "--solver",
        choices=("ilp", "pareto"),
        default="ilp",
        help="ilp (default) or pareto: PMQ's layer-by-layer Pareto-frontier search (exact under one limit; no ties)",
    )
    parser.add_argument(
        "--refine",
        type=bounded_int(1, MAX_COUNT),
        metavar="N",
        help="after the first solve, up to N rounds of LampQ's iterative update: re-score on the model quantized with"
        " the current plan and solve again (stops early when the plan stops changing); report and JSON list each"
        " round's Ω, predicted latency and accuracy",
    )
    parser.add_argument(
        "--patchwise",
        type=_token_fraction,
        metavar="F",
        help="also offer patch-wise options: the top fraction F (0 < F < 1) of each Linear GEMM's input tokens at "
        "its abits, the rest at fewer bits (the target needs an [accelerator.patchwise] table)",
    )
    parser.add_argument(
        "--token-score",
        choices=("norm", "cls_attn", "random"),
        default="norm",
        help="how --patchwise ranks tokens: L1 norm of the input (default), class-token attention, or random "
        "groups (the control)",
    )
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
        help="training images the scores are taken on (default by model size: 128; 4 for models of 5 M parameters"
        " or more on a CPU, with --quadratic-draws 32)",
    )
    parser.add_argument(
        "--calib-images",
        type=bounded_int(1, MAX_COUNT),
        help="training images each plan is calibrated on (default by model size: 256; 32 for models of 5 M "
        "parameters or more on a CPU)",
    )
    parser.add_argument(
        "--verify-images",
        type=bounded_int(1, MAX_COUNT),
        help="images the integer-only model is checked on with --verify (default by model size: 200; 32 for models"
        " of 5 M parameters or more on a CPU)",
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
        help="quadratic form: random-sign products per bit width (default 16, 4 for models of 5 M parameters or"
        " more on a CPU; given alone, asks for random signs)",
    )
    parser.add_argument("--verify", action="store_true", help="check the integer-only model bit by bit")
    parser.add_argument(
        "--detection",
        action="store_true",
        help="cost the plan as a detection backbone (timm Swin or ViT) at --detection-size with an FPN neck at "
        "fixed bits; scores and accuracy stay the model's on --data (detection accuracy needs COCO, not shipped)",
    )
    parser.add_argument(
        "--detection-size", metavar="HxW", help="--detection: image size in pixels (default 800x1333, padded to 32)"
    )
    parser.add_argument(
        "--pareto-points",
        type=bounded_int(0, MAX_PARETO_POINTS),
        default=12,
        help=f"points on the latency–Ω front, one ILP solve each (0: none; at most {MAX_PARETO_POINTS})",
    )
    add_seed_argument(parser, help=None)
    parser.add_argument(
        "--out", help="folder for plan.json, problem.csv, report.md and plots (replaced whole; checked before work)"
    )
    parser.add_argument(
        "--export",
        metavar="FORMATS",
        help="also write the planned model beside plan.json: comma-separated qonnx, onnx-int, npz (needs --out)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the torch stages run: cpu (default) or cuda (scores, calibration, evaluation; the integer-only"
        " check stays on the CPU)",
    )
    parser.add_argument(
        "--progress", action="store_true", help="tqdm bars with an ETA on stderr (default: only when it is a TTY)"
    )
    add_json_argument(parser)
    parser.set_defaults(func=run)


def _token_fraction(text: str) -> float:
    """``--patchwise``: a number strictly between 0 and 1."""
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a token fraction between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"token fraction {text} is outside (0, 1)")
    return value


def run(args: argparse.Namespace) -> int:
    import sim
    from allocator.cli.commands.export import parse_formats
    from allocator.cli.main import emit_json
    from allocator.ilp.model import Limits
    from allocator.outputs import check_output_dir
    from allocator.pipeline.meter import StageMeter
    from allocator.pipeline.run import OWNED_FILES, PipelineConfig, run_stages
    from allocator.torchenv import check_device
    from quant.inputs import model_and_data
    from sim.errors import InputError

    if args.latency_ms is not None and args.latency_of is not None:
        raise InputError("give --latency-ms or --latency-of, not both")
    limits = Limits(
        latency_ms=args.latency_ms, size_mb=args.size_mb, bops=args.bops, onchip=args.onchip, energy_mj=args.energy_mj
    )
    log = None if args.json else (lambda message: print(f"mixbit: {message}", file=sys.stderr))
    progress = args.progress or sys.stderr.isatty()
    target = sim.load_target(args.target)  # no torch needed: a wrong target fails in a fraction of a second
    if args.dataflow is not None:
        target = target.replace_array(dataflow=args.dataflow)
    if args.out is not None:
        check_output_dir(args.out, owned=OWNED_FILES)
    config = PipelineConfig(
        target=target,
        model_name=args.model,
        limits=limits,
        latency_of=args.latency_of,
        sensitivity=args.sensitivity,
        hessian_form=args.hessian_form,
        act_kind=args.act_kind,
        sensitivity_images=args.sensitivity_images,
        calib_images=args.calib_images,
        verify_images=args.verify_images,
        max_draws=args.draws,
        quadratic_draws=args.quadratic_draws,
        quadratic_estimator=args.estimator,
        pareto_points=args.pareto_points,
        verify=args.verify,
        out=args.out,
        exports=parse_formats(args.export) if args.export else (),
        device=check_device(args.device),  # a missing GPU fails here, before the model is built
        seed=args.seed,
        progress=progress,
        solver=args.solver,
        refine=args.refine,
        detection=_detection_size(args),
        patchwise=args.patchwise,
        token_score=args.token_score,
    )
    meter = StageMeter(config.device)
    # weights and data are read and checked against each other next: a wrong checkpoint, folder or image
    # fails here, before the workload, the cost table or the sensitivity pass (progress lines start only
    # after every check, so an error is the only line on stderr)
    with meter.stage("load"):
        net, _, data = model_and_data(
            args.model, data_options(args), checkpoint=args.checkpoint, device=config.device, progress=progress, log=log
        )
    result = run_stages(net, data, config, meter=meter, log=log)
    obj = result.to_json()
    if args.json:
        emit_json(obj)
    else:
        _print_summary(result)
    verify = obj.get("verify")
    return 1 if verify and verify["mismatches"] else 0


def _detection_size(args: argparse.Namespace) -> tuple[int, int] | None:
    """(height, width) of ``--detection`` (default 800x1333), or None; a bad size or model exits 2 before loading."""
    from allocator.bridge.detection import DETECTION_SIZE, detection_model, parse_img_size
    from sim.errors import InputError

    if args.detection_size is not None and not args.detection:
        raise InputError("--detection-size needs --detection")
    if not args.detection:
        return None
    size = parse_img_size(args.detection_size, "--detection-size") if args.detection_size else DETECTION_SIZE
    detection_model(args.model, (64, 64))  # a model --detection cannot take fails now (small and fast to build)
    return size


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
    data = result.data
    if data:
        print(f"data: {', '.join(f'{k} {v}' for k, v in data.get('sources', {}).items())}")
        if data.get("eval_skipped"):
            print(f"accuracy not measured: {data['eval_skipped']}")
    print()
    print(f"{'layer':<32} {'wbits':>5} {'abits':>5}")
    for choice in a.chosen:
        split = (
            f"  (top {choice.token_fraction:g} of tokens; the rest at {choice.abits_low})" if choice.abits_low else ""
        )
        print(f"{choice.layer:<32} {choice.wbits:>5} {choice.abits:>5}{split}")
    if result.refine_rounds:
        print(f"\nrefine rounds ({result.solver}): Ω under each round's scores, predicted latency, accuracy")
        for r in result.refine_rounds:
            print(
                f"  round {r.round}: Ω {r.objective:.4g}, {r.latency_ms:.4f} ms, {acc(r.accuracy)}, "
                f"{r.changed_layers} layers changed"
            )
    if result.verify is not None:
        v = result.verify.to_json()
        print(f"\nverify: {v['checked']:,} elements checked, {v['mismatches']} mismatches")
    if result.stages:
        print(f"\nstages ({result.device}, {result.threads} threads): seconds, peak resident MiB so far")
        for stage in result.stages:
            peak = "-" if stage.peak_rss_mb is None else f"{stage.peak_rss_mb:,.0f}"
            print(f"  {stage.name:<10} {stage.seconds:>9.1f} {peak:>9}")
    if result.outputs:
        print(f"\nwrote {', '.join(result.outputs.values())}")
