"""`mixbit train`: train a testbed ViT or a small timm model on digits or an image folder, and save a checkpoint
that `--checkpoint` loads (allocate, verify)."""

from __future__ import annotations

import argparse
import sys

from allocator.cli.args import add_json_argument, add_seed_argument, bounded_int, positive_float
from allocator.cli.commands.allocate import add_data_arguments, data_options

__all__ = ["register"]


MAX_EPOCHS = 1_000_000
"""Far above any real run; a bound so a typo is refused rather than run for days."""
MAX_LR = 10.0
"""AdamW learning rates in use are 1e-5..1e-2; a step of 10 already destroys any weights, so more is a typo."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a ViT on digits or an image folder and save a checkpoint",
        description="Train on the training side of --data (DIR/train or a 75 %% split of DIR/<class>), evaluate "
        "on its val/test side, and write a checkpoint recording the model's keyword arguments, class names and "
        "data config, so --checkpoint rebuilds and feeds it the same way.",
    )
    parser.add_argument("--model", default="mixbit_vit_digits", help="testbed or timm model name")
    add_data_arguments(parser, synthetic=False)
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=100, help="training epochs (default 100)")
    parser.add_argument("--batch-size", type=bounded_int(1, 1_000_000), default=64, help="images per step (default 64)")
    parser.add_argument(
        "--lr",
        type=positive_float(MAX_LR, what=" (AdamW learning rate)"),
        default=2e-3,
        help=f"AdamW peak learning rate, above 0 and at most {MAX_LR:g} (default 0.002)",
    )
    add_seed_argument(parser, help="seed for initial weights, batch order and split")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), help="1 grey or 3 RGB model input (default: the images')"
    )
    parser.add_argument("--out", default=None, help="checkpoint file to write (.pt or .safetensors)")
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from allocator.cli.main import emit_json
    from allocator.outputs import check_output_file
    from quant.checkpoint import load_model
    from quant.data import check_img_size, model_data_config, model_input_size, open_data, peek
    from quant.errors import InputError
    from quant.inputs import _patch_size
    from quant.models import create_model
    from quant.training import TrainOptions, model_kwargs_for, train_on_data

    if args.out is not None:  # an unusable --out fails now, not after training
        check_output_file(args.out, flag="--out")
    options = data_options(args)
    train_options = TrainOptions(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    if args.out is not None and args.out.endswith(("/", "\\")):
        raise InputError(f"--out {args.out}: give a checkpoint file name (.pt or .safetensors), not a folder")
    img_size = None if args.img_size is None else check_img_size(args.img_size, _patch_size(args.model))
    classes, found_channels = peek(options.data, options.calib_data)
    channels = args.channels or found_channels
    if args.checkpoint:
        model, weights = load_model(args.model, args.checkpoint, **({"img_size": img_size} if img_size else {}))
        kwargs = dict(weights.model_kwargs)
        recorded, expected, outputs = weights.data_config, weights.classes, weights.num_outputs
        label = weights.label(args.model)
    else:
        kwargs = model_kwargs_for(args.model, len(classes), channels, img_size)
        torch.manual_seed(args.seed)
        try:
            model = create_model(args.model, **kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"--model {args.model}: cannot build it with {kwargs}: {str(exc)[:160]}") from None
        recorded, expected, outputs, label = None, None, len(classes), args.model
    if "img_size" not in kwargs and hasattr(model, "patch_embed"):
        kwargs["img_size"] = model_input_size(model)[1]
    kwargs.setdefault("num_classes", int(getattr(model, "num_classes", len(classes))))
    kwargs.setdefault("in_chans", model_input_size(model)[0])
    config = model_data_config(
        model,
        recorded=recorded,
        interpolation=options.interpolation,
        crop_pct=options.crop_pct,
        mean=options.mean,
        std=options.std,
    )
    data = open_data(
        options.data,
        config,
        calib_data=options.calib_data,
        eval_data=options.eval_data,
        eval_images=options.eval_images,
        classes=expected,
        num_outputs=outputs,
        weights=label,
        model_label=args.model,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    result = train_on_data(
        args.model,
        model,
        data,
        train_options,
        model_kwargs=kwargs,
        out=args.out,
        record_data_config=data.name != "digits",
        progress=sys.stderr.isatty(),
    )
    if args.json:
        emit_json(result)
    else:
        accuracy = "-" if result["accuracy"] is None else f"{result['accuracy'] * 100:.2f} %"
        print(
            f"{result['model']} on {result['data']}: {accuracy} test accuracy "
            f"({result['test_images']} images, {result['epochs']} epochs, {result['train_seconds']:.1f} s)"
        )
        if result["checkpoint"]:
            print(f"checkpoint: {result['checkpoint']}")
    return 0
