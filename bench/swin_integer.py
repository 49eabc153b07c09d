"""Integer-only Swin against the fake-quant model's exact mode on timm ``swin_tiny_patch4_window7_224`` at 224×224.

Random weights (``pretrained=False``: no download here), quantized by each plan (uniform W8A8, W4A4, and a plan with
non-uniform activation quantizers on Swin's post-Softmax/post-GELU/LayerNorm points), calibrated on
``--calibration`` Gaussian images, then ``quant.verify_bit_exact`` on ``--images`` other Gaussian images: every
quantization point element by element and the logits (issue #19 item 4: 0 mismatches on 2 images). Recorded per
plan: points, elements checked, mismatches, the first mismatch, seconds for conversion and for the comparison, the
int64 accumulators and the process's peak RSS, plus the machine and its load.

Usage: .venv/bin/python bench/swin_integer.py [--images 2] [--calibration 4] [--out bench/results/swin_integer.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/ holds scripts named like packages (bench/allocator.py): import the real packages from the repo root
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)  # a shared 2-core machine

from quant.calibrate import calibrate_  # noqa: E402
from quant.integer import Widths, to_integer  # noqa: E402
from quant.models import create_model  # noqa: E402
from quant.plan import BitPlan, LayerBits  # noqa: E402
from quant.quantize import QuantConfig, quantize_  # noqa: E402
from quant.verify import verify_bit_exact  # noqa: E402

MODEL = "swin_tiny_patch4_window7_224"
L = LayerBits


def plans() -> dict[str, BitPlan]:
    nonuniform = {}
    for stage, depth in enumerate((2, 2, 6, 2)):
        for block in range(depth):
            name = f"layers.{stage}.blocks.{block}"
            nonuniform[f"{name}.attn.qkv"] = L(8, 8, act_kind="ptf")  # LayerNorm output: channel outliers
            nonuniform[f"{name}.attn.matmul_av"] = L(8, 6, act_kind="log2")  # post-Softmax
            nonuniform[f"{name}.mlp.fc2"] = L(6, 6, act_kind="twin_uniform")  # post-GELU
    return {
        "w8a8": BitPlan.uniform(MODEL, 8, 8),
        "w4a4": BitPlan.uniform(MODEL, 4, 4),
        "nonuniform_ptf_log2_twin": BitPlan(MODEL, nonuniform, default=L(8, 8)),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=4)
    parser.add_argument("--plans", nargs="*", default=None, help="plan names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "swin_integer.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()
    rows = {}
    chosen = {k: v for k, v in plans().items() if not args.plans or k in args.plans}
    for name, plan in chosen.items():
        torch.manual_seed(0)
        model = create_model(MODEL)
        images = torch.randn(args.calibration + args.images, 3, 224, 224)
        quantize_(model, QuantConfig(plan=plan, weight_method="minmax"))
        calibrate_(model, images[: args.calibration])
        start = time.perf_counter()
        integer = to_integer(model, Widths(accumulator_bits=64))
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        report = verify_bit_exact(model, images[args.calibration :], integer, batch_size=1)
        verify_s = time.perf_counter() - start
        rows[name] = {
            **report.to_json(),
            "convert_seconds": round(convert_s, 2),
            "verify_seconds": round(verify_s, 2),
            "int64_accumulators": [n for n, (_, dtype) in integer.accumulators().items() if dtype == torch.int64],
            "peak_rss_mb_so_far": peak_rss_mb(),
        }
        print(
            f"{name:>26}: {report.mismatches} mismatches / {report.checked} elements ({report.points} points, "
            f"{report.images} images); convert {convert_s:.1f} s, verify {verify_s:.1f} s, peak RSS {peak_rss_mb()} MiB"
        )
    result = {
        "benchmark": "swin_integer",
        "machine": {
            "node": platform.node(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in load_start],
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "note": "shared 2-core machine: other engineers' work ran at the same time (see load averages)",
        },
        "model": MODEL,
        "weights": "random (pretrained=False), seed 0",
        "image_size": [224, 224],
        "verify_images": args.images,
        "calibration_images": args.calibration,
        "widths": "64-bit accumulators allowed (log2 probabilities decode up to 2^(2^b−2)); 32-bit activations",
        "plans": {name: plan.to_dict() for name, plan in chosen.items()},
        "results": rows,
        "peak_rss_mb": peak_rss_mb(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
