"""`mixbit verify`: check the integer-only model against the fake-quant model, element by element.

Quantizes ``--model`` with the bit plan, calibrates it on the training split of ``--data``, then runs
``--images`` test images through the integer-only model and through the fake-quant model's exact mode and
compares every quantization point. Exit status: 0 when nothing differs, 1 on any mismatch, 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from allocator.cli.args import (
    add_calibration_argument,
    add_images_argument,
    add_json_argument,
    add_plan_argument,
    add_seed_argument,
)
from allocator.cli.commands.allocate import add_data_arguments, data_options

__all__ = ["EXIT_MISMATCH", "register", "run", "verify_plan"]

EXIT_MISMATCH = 1
"""Exit status when the integer model and the exact mode differ anywhere."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "verify",
        help="check the integer-only model against the fake-quant model",
        description="Integer-only inference vs the fake-quant model's exact mode, every quantization point "
        "element by element. Exit status 0: bit-exact; 1: mismatches; 2: bad input.",
    )
    parser.add_argument("--model", required=True, help="timm model name or testbed model (mixbit_vit_test, ...)")
    add_plan_argument(parser)
    add_data_arguments(parser)
    add_images_argument(parser, default=200, help="test images compared (default 200)")
    add_calibration_argument(parser, help="training images to calibrate on")
    add_seed_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(func=run)


def verify_plan(
    model_name: str,
    plan_path: str,
    data: Any = "digits",
    images: int = 200,
    calibration: int = 256,
    checkpoint: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantize, calibrate, verify; the JSON object ``mixbit verify --json`` prints. ``data``: ``digits``,
    ``synthetic``, a folder, or ``quant.inputs.DataOptions``. Without labelled evaluation images the
    calibration images are compared (bit-exactness needs no labels) and accuracies are None."""
    import torch

    from allocator.bridge.plan import read_bit_plan
    from quant.calibrate import calibrate_
    from quant.errors import InputError
    from quant.inputs import DataOptions, model_and_data
    from quant.integer import to_integer
    from quant.quantize import QuantConfig, quantize_
    from quant.verify import exact_codes, verify_bit_exact

    if images < 1 or calibration < 1:
        raise InputError(f"--images and --calibration must be at least 1, got {images} and {calibration}")
    plan = read_bit_plan(plan_path)
    options = data if isinstance(data, DataOptions) else DataOptions(data=data, seed=seed)
    model, weights, opened = model_and_data(model_name, options, checkpoint=checkpoint)
    quantize_(model, QuantConfig(plan=plan))
    calibrate_(model, opened.calib_batch(calibration, seed)[0])
    if opened.num_eval:
        test_images, labels = opened.eval_tensors(images)
    else:
        test_images, labels = opened.calib_batch(images, seed + 1)[0], None
    integer = to_integer(model)
    report = verify_bit_exact(model, test_images, integer)
    with torch.no_grad():
        float_logits = model(test_images)
    _, exact_logits = exact_codes(model, test_images)
    integer_logits = integer(test_images)

    def accuracy(logits: torch.Tensor) -> float | None:
        return None if labels is None else float((logits.argmax(dim=-1) == labels).double().mean())

    return {
        "model": model_name,
        "plan": str(plan_path),
        "data": opened.name,
        "weights": weights.source,
        **report.to_json(),
        "accuracy": {
            "integer": accuracy(integer_logits),
            "exact": accuracy(exact_logits),
            "fake_quant": accuracy(float_logits),
        },
        "max_abs_logit_gap_exact_vs_fake_quant": float((exact_logits - float_logits.double()).abs().max()),
        "accumulators": {
            name: {"bits": bits, "dtype": str(dtype).removeprefix("torch.")}
            for name, (bits, dtype) in integer.accumulators().items()
        },
    }


def run(args: argparse.Namespace) -> int:
    from allocator.cli.main import emit_json

    result = verify_plan(
        args.model, args.bits, data_options(args), args.images, args.calibration, args.checkpoint, args.seed
    )
    if args.json:
        emit_json(result)
    else:
        verdict = "bit-exact" if result["mismatches"] == 0 else f"{result['mismatches']} MISMATCHES"
        print(f"{args.model} with {args.bits}: {verdict}")
        print(f"  {result['points']} quantization points, {result['checked']} elements on {result['images']} images")
        if result["first_mismatch"]:
            first = result["first_mismatch"]
            where = f"{first['tensor']}{first['index']}"
            print(f"  first mismatch: {where}: integer {first['integer']}, exact {first['exact']}")
        acc = result["accuracy"]
        if acc["integer"] is None:
            print(f"  accuracy: not measured, no labelled images (weights: {result['weights']})")
        else:
            print(
                f"  accuracy: integer {acc['integer']:.4f}, exact {acc['exact']:.4f}, "
                f"fake-quant float32 {acc['fake_quant']:.4f} (weights: {result['weights']})"
            )
    return 0 if result["mismatches"] == 0 else EXIT_MISMATCH
