"""Export bench: each format's time and file size, and each export checked against what it claims.

Digits testbed (mixbit_vit_digits, shipped checkpoint), three plans — uniform W8A8, uniform W4A4 and a mixed
plan chosen by the ILP (``--mixed-plan``, written by ``mixbit allocate``) — calibrated on 256 training
images and checked on ``--images`` test images:
- onnx-int under onnxruntime vs the integer model, every output element by element (mismatches);
- qonnx under qonnx's executor vs the fake-quant model (logit gaps, argmax agreement, within tolerance?);
- ``qonnx.util.inference_cost`` MACs, BOPs and weight bits vs mixbit's predictions for the plan;
- npz arrays read back vs the integer model's tensors.
DeiT-S at 224 (random weights, W8A8, 2 images): onnx-int with 0 mismatches, export times and sizes, qonnx
inference cost vs mixbit's (the node-by-node qonnx executor is not run there).

    .venv/bin/python bench/export.py --mixed-plan bench/results/export_mixed_plan.json  # -> bench/results/export.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from allocator.bridge.plan import read_bit_plan  # noqa: E402
from allocator.cli.commands.export import compare_cost  # noqa: E402
from quant.calibrate import calibrate_  # noqa: E402
from quant.exports import export  # noqa: E402
from quant.exports.check import check_npz, check_onnx_int, check_qonnx  # noqa: E402
from quant.integer import to_integer  # noqa: E402
from quant.models import create_model  # noqa: E402
from quant.plan import BitPlan  # noqa: E402
from quant.quantize import QuantConfig, quantize_  # noqa: E402
from quant.testbed import load_data  # noqa: E402

FORMATS = ("onnx-int", "qonnx", "npz")
NAMES = {"onnx-int": "model.int.onnx", "qonnx": "model.qonnx.onnx", "npz": "npz"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_all(model: torch.nn.Module, name: str, folder: Path, formats: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for fmt in formats:
        result = export(model, fmt, folder / NAMES[fmt], model_name=name)
        out[fmt] = {"seconds": round(result.seconds, 3), "bytes": result.bytes, **result.details}
    return out


def digits(plan_path: Path, images: int) -> dict[str, Any]:
    name = "mixbit_vit_digits"
    net = create_model(name, pretrained=True)
    split = load_data("digits", img_size=16, channels=1, seed=0)
    plans = {
        "W8A8": BitPlan.uniform(name, 8, 8),
        "W4A4": BitPlan.uniform(name, 4, 4),
        "mixed_ilp": read_bit_plan(plan_path),
    }
    test = split.x_test[:images]
    results = {}
    for label, plan in plans.items():
        model = quantize_(copy.deepcopy(net), QuantConfig(plan=plan))
        calibrate_(model, split.x_train[:256])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            row: dict[str, Any] = {"exports": export_all(model, name, folder, FORMATS)}
            integer = to_integer(model)
            row["onnx_int_check"] = check_onnx_int(folder / NAMES["onnx-int"], integer, test).to_json()
            row["qonnx_check"] = check_qonnx(folder / NAMES["qonnx"], model, test).to_json()
            row["inference_cost"] = compare_cost(str(folder / NAMES["qonnx"]), net, plan)
            row["npz_check"] = check_npz(folder / NAMES["npz"], integer).to_json()
        results[label] = row
        print(label, json.dumps(row, default=str)[:1500], flush=True)
    return {"model": name, "images": int(test.shape[0]), "calibration_images": 256, "plans": results}


def deit(images: int) -> dict[str, Any]:
    name = "deit_small_patch16_224"
    torch.manual_seed(0)
    net = create_model(name)
    plan = BitPlan.uniform(name, 8, 8)
    model = quantize_(copy.deepcopy(net), QuantConfig(plan=plan))
    calibrate_(model, torch.randn(images, 3, 224, 224))
    test = torch.randn(images, 3, 224, 224)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        row: dict[str, Any] = {"exports": export_all(model, name, folder, FORMATS)}
        row["onnx_int_check"] = check_onnx_int(folder / NAMES["onnx-int"], to_integer(model), test, batch=1).to_json()
        row["inference_cost"] = compare_cost(str(folder / NAMES["qonnx"]), net, plan)
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return {"model": name, "weights": "random (timm init, seed 0)", "plan": "W8A8", "images": images, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixed-plan", type=Path, default=ROOT / "bench/results/export_mixed_plan.json")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--deit-images", type=int, default=2)
    parser.add_argument("--skip-deit", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/export.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "torch_threads": 1,
        "load_average_at_start": os.getloadavg(),
        "note": "shared 2-core machine; other engineers' tests and benches were running (see load averages); "
        "times are wall clock and noisy, sizes are exact",
        "command": "bench/export.py " + " ".join(sys.argv[1:]),
    }
    start = time.perf_counter()
    results["digits"] = digits(args.mixed_plan, args.images)
    results["digits"]["seconds"] = round(time.perf_counter() - start, 1)
    results["digits"]["load_average_at_end"] = os.getloadavg()
    if not args.skip_deit:
        start = time.perf_counter()
        results["deit_small"] = deit(args.deit_images)
        results["deit_small"]["seconds"] = round(time.perf_counter() - start, 1)
        results["deit_small"]["load_average_at_end"] = os.getloadavg()
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
