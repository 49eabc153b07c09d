"""`mixbit export`: write a planned model as QONNX, integer ONNX or npz + manifest, and check what was written.

Quantizes ``--model`` with the bit plan, calibrates it on the training split of ``--data``, writes ``--out``
in ``--format``, then (unless ``--no-check``) checks the export on ``--images`` test images: onnx-int under
onnxruntime against the integer model (0 mismatches), qonnx under qonnx's executor against the fake-quant
model (within ``quant.exports.check.QONNX_TOLERANCE``) and qonnx's inference cost against mixbit's MACs,
BOPs and weight bits for the plan. Exit status: 0 when the checks pass, 1 when one fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from allocator.cli.args import (
    add_calibration_argument,
    add_images_argument,
    add_json_argument,
    add_plan_argument,
    add_seed_argument,
)

__all__ = ["EXIT_CHECK_FAILED", "export_plan", "parse_formats", "predicted_cost", "register", "run"]

EXIT_CHECK_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="write a planned model as QONNX, integer ONNX or npz, and check it",
        description="Export the quantized model (qonnx: fake-quant graph with Quant nodes; onnx-int: integer-only "
        "ONNX graph; npz: integer arrays + manifest.json) and check it on test images. "
        "Exit status 0: checks pass; 1: a check failed; 2: bad input.",
    )
    parser.add_argument("--model", required=True, help="timm model name or testbed model (mixbit_vit_digits, ...)")
    add_plan_argument(parser)
    parser.add_argument("--format", required=True, metavar="FORMAT", help="qonnx, onnx-int or npz")
    parser.add_argument("--out", required=True, metavar="PATH", help="file to write (npz: a folder)")
    parser.add_argument("--data", default="digits", help="'digits', 'synthetic' or an image folder DIR/<class>/*")
    add_images_argument(parser, default=50, help="test images the check runs on (default 50)")
    add_calibration_argument(parser, help="training images to calibrate on (default 256)")
    parser.add_argument(
        "--checkpoint", metavar="FILE", help="weights saved by `mixbit train` (default: shipped or random)"
    )
    parser.add_argument(
        "--target",
        metavar="T",
        help="shipped target or TOML file: accumulators get the widths its PE model gives each GEMM's bits "
        "(checked as the integer model runs); default 32 bits",
    )
    parser.add_argument("--no-check", action="store_true", help="write the export without checking it")
    add_seed_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(func=run)


def parse_formats(text: str) -> list[str]:
    """``qonnx,onnx-int`` -> ["qonnx", "onnx-int"]; ``InputError`` for an empty list or an unknown format."""
    from quant.errors import InputError
    from quant.exports import check_format

    formats = [part.strip() for part in text.split(",") if part.strip()]
    if not formats:
        raise InputError(f"export formats: expected a comma-separated list, got {text!r}")
    return [check_format(fmt) for fmt in dict.fromkeys(formats)]


def predicted_cost(net: Any, plan: Any) -> dict[str, Any]:
    """mixbit's MACs, BOPs (MACs·wbits·abits) and weight bits for ``plan`` at batch 1, from the workload."""
    from allocator.bridge.workload import workload_from_model

    workload = workload_from_model(net)
    layers = {}
    for gemm in workload.gemms:
        bits = plan.bits_for(gemm.name)
        macs = int(gemm.m) * int(gemm.n) * int(gemm.k) * int(gemm.count)
        layers[gemm.name] = {
            "macs": macs,
            "bops": macs * bits.wbits * bits.abits,
            "weight_bits": int(gemm.weight_params) * bits.wbits,
        }
    return {
        "macs": sum(v["macs"] for v in layers.values()),
        "bops": sum(v["bops"] for v in layers.values()),
        "weight_bits": sum(v["weight_bits"] for v in layers.values()),
        "layers": layers,
    }


def compare_cost(path: str, net: Any, plan: Any) -> dict[str, Any]:
    """qonnx's inference cost of the exported graph beside mixbit's prediction; ``equal`` when all three agree."""
    from quant.exports.check import qonnx_cost

    theirs = qonnx_cost(path)
    ours = predicted_cost(net, plan)
    figures = {
        "macs": (ours["macs"], theirs["macs"]),
        "bops": (ours["bops"], theirs["bops"]),
        "weight_bits": (ours["weight_bits"], theirs["weight_bits"]),
    }
    return {
        "mixbit": {k: v[0] for k, v in figures.items()},
        "qonnx": {k: v[1] for k, v in figures.items()},
        "unsupported_ops": theirs["unsupported"],
        "equal": all(int(a) == int(b) for a, b in figures.values()),
    }


def _check_out(path: Path, fmt: str) -> None:
    """Fail before any work when ``path`` cannot be written."""
    from quant.errors import InputError

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {path}: folder {parent} is not writable")
    if path.exists() and (fmt == "npz") != path.is_dir():
        raise InputError(f"--out {path}: exists and is {'a folder' if path.is_dir() else 'a file'}")


def export_plan(
    model_name: str,
    plan_path: str,
    fmt: str,
    out: str,
    *,
    data: str = "digits",
    images: int = 50,
    calibration: int = 256,
    checkpoint: str | None = None,
    check: bool = True,
    seed: int = 0,
    target: str | None = None,
) -> dict[str, Any]:
    """Quantize, calibrate, export and check; the JSON object ``mixbit export --json`` prints. ``target``: the
    integer formats use (and are checked against) the accumulator widths of that target's PE model."""
    from allocator.bridge.plan import read_bit_plan
    from quant.calibrate import calibrate_
    from quant.errors import InputError
    from quant.exports import export
    from quant.inputs import DataOptions, model_and_data
    from quant.integer import Widths, to_integer
    from quant.quantize import QuantConfig, quantize_

    (fmt,) = parse_formats(fmt) if "," not in fmt else (None,)
    if fmt is None:
        raise InputError("--format takes one format (qonnx, onnx-int or npz)")
    if images < 1 or calibration < 1:
        raise InputError(f"--images and --calibration must be at least 1, got {images} and {calibration}")
    _check_out(Path(out), fmt)
    if target is not None:
        import sim

        sim.load_target(target)  # a bad target fails before any work
    plan = read_bit_plan(plan_path)
    if plan.model and plan.model != model_name:
        raise InputError(f"--bits {plan_path}: the plan is for model {plan.model!r}, not {model_name!r}")
    net, weights, opened = model_and_data(model_name, DataOptions(data=data, seed=seed), checkpoint=checkpoint)
    from quant.exports import export_unsupported

    unsupported = export_unsupported(net)  # before quantizing and calibrating
    if unsupported:
        raise InputError(f"--model {model_name}: {unsupported}")
    import copy

    model = quantize_(copy.deepcopy(net), QuantConfig(plan=plan))
    calibrate_(model, opened.calib_batch(calibration, seed)[0])
    widths = None
    if target is not None:
        from allocator.bridge.widths import datapath_widths

        widths = datapath_widths(model, plan)
    result = export(model, fmt, out, model_name=model_name, widths=widths)
    obj: dict[str, Any] = {"model": model_name, "plan": str(plan_path), "weights": str(weights), **result.to_json()}
    obj["widths"] = (widths or Widths()).to_json()
    if not check:
        return obj
    # labelled evaluation images when the data has them, else other calibration-split images (no labels needed)
    test_images = opened.eval_tensors(images)[0] if opened.num_eval else opened.calib_batch(images, seed + 1)[0]
    if fmt == "onnx-int":
        from quant.exports.check import check_onnx_int

        obj["check"] = check_onnx_int(out, to_integer(model, widths), test_images).to_json()
        obj["ok"] = obj["check"]["mismatches"] == 0
    elif fmt == "qonnx":
        from quant.exports.check import check_qonnx

        obj["check"] = check_qonnx(out, model, test_images).to_json()
        obj["inference_cost"] = compare_cost(out, net, plan)
        obj["ok"] = obj["check"]["within_tolerance"] and obj["inference_cost"]["equal"]
    else:
        from quant.exports.check import check_npz

        obj["check"] = check_npz(out, to_integer(model, widths), test_images).to_json()
        obj["ok"] = obj["check"]["mismatches"] == 0
    return obj


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json

    result = export_plan(
        args.model,
        args.bits,
        args.format,
        args.out,
        data=args.data,
        images=args.images,
        calibration=args.calibration,
        checkpoint=args.checkpoint,
        check=not args.no_check,
        seed=args.seed,
        target=args.target,
    )
    if args.json:
        emit_json(result)
    else:
        size = result["bytes"] / 1e6
        print(
            f"{args.model} with {args.bits}: wrote {result['format']} to {result['path']} ({size:.3f} MB, "
            f"{result['seconds']:.2f} s)"
        )
        check = result.get("check")
        if check is not None and "arrays" in check:  # npz: the arrays read back against the integer model
            print(
                f"  check: {check['arrays']} arrays of {check['layers']} layers read back, {check['checked']:,} "
                f"values, {check['mismatches']} mismatches"
            )
        elif check is not None and "mismatches" in check:
            print(
                f"  check: {check['checked']:,} elements of {check['outputs']} outputs on {check['images']} images, "
                f"{check['mismatches']} mismatches"
            )
        elif check is not None:
            print(
                f"  check: qonnx executor vs fake-quant on {check['images']} images: max |Δlogit| "
                f"{check['max_abs_logit_gap']:.3g} (logit scale {check['logit_scale']:.3g}), argmax agreement "
                f"{check['argmax_agreement']:.4f}, within tolerance: {check['within_tolerance']}"
            )
        cost = result.get("inference_cost")
        if cost is not None:
            print(
                f"  inference cost (mixbit / qonnx): MACs {cost['mixbit']['macs']:,} / {cost['qonnx']['macs']:,.0f}, "
                f"BOPs {cost['mixbit']['bops']:,} / {cost['qonnx']['bops']:,.0f}, weight bits "
                f"{cost['mixbit']['weight_bits']:,} / {cost['qonnx']['weight_bits']:,.0f}: "
                f"{'equal' if cost['equal'] else 'DIFFERENT'}"
            )
    return 0 if result.get("ok", True) else EXIT_CHECK_FAILED
