"""`mixbit train`: train a testbed ViT on digits or an image folder, and save a checkpoint."""

from __future__ import annotations

import argparse

from allocator.cli.args import MAX_SEED, bounded_int

__all__ = ["register"]


MAX_EPOCHS = 1_000_000
"""Far above any real run; a bound so a typo is refused rather than run for days."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a testbed ViT on digits or an image folder")
    parser.add_argument("--model", default="mixbit_vit_digits", help="testbed or timm model name")
    parser.add_argument("--data", default="digits", help="'digits' or a folder with one sub-folder of images per class")
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=100, help="training epochs (default 100)")
    parser.add_argument(
        "--seed", type=bounded_int(0, MAX_SEED), default=0, help="seed for initial weights, batch order and split"
    )
    parser.add_argument("--img-size", type=int, default=16, help="image side in pixels for --data DIR (default 16)")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grey or 3 RGB for --data DIR")
    parser.add_argument("--out", default=None, help="checkpoint file to write (.pt)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from allocator.cli.main import emit_json
    from allocator.outputs import check_output_file
    from quant.testbed import load_data, train_and_save

    if args.out is not None:  # an unusable --out fails now, not after training
        check_output_file(args.out, flag="--out")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    data = load_data(args.data, img_size=args.img_size, channels=args.channels, seed=args.seed)
    result = train_and_save(args.model, data, args.epochs, args.seed, args.out)
    if args.json:
        emit_json(result)
    else:
        print(
            f"{result['model']} on {result['data']}: {result['accuracy'] * 100:.2f} % test accuracy "
            f"({result['test_images']} images, {result['epochs']} epochs, {result['train_seconds']:.1f} s)"
        )
        if result["checkpoint"]:
            print(f"checkpoint: {result['checkpoint']}")
    return 0
