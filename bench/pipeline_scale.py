"""The whole pipeline on real-size timm models: wall seconds and peak resident memory per stage, end to end.

For each model (random weights, ``pretrained=False``) one subprocess runs, with DEFAULT settings::

    mixbit allocate --target zcu102 --model MODEL --data DIR --latency-of W4A4 [--verify] --json --out OUT

on a generated RGB image folder in the ImageNet layout (``DIR/train/<class>/*.png`` and ``DIR/val/<class>/*.png``;
``CLASSES`` classes of ``PER_CLASS`` random 64x64 PNGs each side; the model's own data config resizes them to
224x224). Recorded per model: the allocate JSON's ``stages`` (name, seconds, ``peak_rss_mb`` = the process's
resident high-water mark at the end of that stage) and ``peak_rss_mb``, the subprocess's wall seconds and its max
RSS from ``os.wait4`` (ru_maxrss of that child alone), the sensitivity estimator the size rule chose, the
verify counts, and the exit status. ``--verify`` is given where the integer-only path supports the model
(timm VisionTransformer: ViT/DeiT); Swin is run without it and the JSON says why.

Goals (issue #13): DeiT-S ≤ 4 GB peak and ≤ 15 minutes end to end on the 2-core machine; ViT-B ≤ 8 GB.

Run: ``.venv/bin/python bench/pipeline_scale.py [--models deit_tiny_patch16_224,...] [--threads N]``; writes
``bench/results/pipeline_scale.json`` (models not run this time are kept from the previous file only with
``--merge``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pipeline_scale.json"
MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "vit_base_patch16_224", "swin_tiny_patch4_window7_224")
TARGET = "zcu102"
LATENCY_OF = "W4A4"
CLASSES = 10
PER_CLASS = 8
IMAGE_PX = 64
GOALS = {
    "deit_small_patch16_224": {"peak_rss_mb": 4096.0, "seconds": 15 * 60.0},
    "vit_base_patch16_224": {"peak_rss_mb": 8192.0},
}
# why --verify is left out for a model (the integer-only path: quant.integer.IntegerModel, quant.integer_swin);
# empty since the integer-only Swin landed: every model here is verified on the next run
NO_VERIFY: dict[str, str] = {}


def make_folder(root: Path, classes: int = CLASSES, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """An ImageNet-layout folder of random RGB PNGs: ``root/train/class_k/*.png`` and ``root/val/class_k/*.png``.
    Each class has its own mean colour, so the labels are not pure noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for side in ("train", "val"):
        for k in range(classes):
            folder = root / side / f"class_{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = rng.integers(40, 216, size=3)
            for i in range(per_class):
                noise = rng.normal(0, 40, size=(IMAGE_PX, IMAGE_PX, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="RGB").save(folder / f"{i:03d}.png")
    return root


def run_model(model: str, data: Path, work: Path, threads: int | None) -> dict[str, Any]:
    """One ``mixbit allocate`` subprocess; its JSON, wall seconds and max RSS (``os.wait4``)."""
    mixbit = Path(sys.executable).with_name("mixbit")
    out = work / f"out_{model}"
    command = [
        str(mixbit),
        "allocate",
        "--target",
        TARGET,
        "--model",
        model,
        "--data",
        str(data),
        "--latency-of",
        LATENCY_OF,
        "--json",
        "--progress",  # tqdm bars to the stderr file (stdout stays one JSON object), to watch a long run
        "--out",
        str(out),
    ]
    verify = model not in NO_VERIFY
    if verify:
        command.append("--verify")
    if threads is not None:
        command += ["--threads", str(threads)]
    stdout_path, stderr_path = work / f"{model}.stdout", work / f"{model}.stderr"
    load_before = os.getloadavg()
    start = time.perf_counter()
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=work)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    record: dict[str, Any] = {
        "command": " ".join(["mixbit", *command[1:]]).replace(str(data), "DIR").replace(str(out), "OUT"),
        "exit_status": child.returncode,
        "wall_seconds": round(wall, 1),
        "subprocess_max_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "verify_run": verify,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }
    if not verify:
        record["verify_skipped"] = NO_VERIFY[model]
    text = stdout_path.read_text()
    if child.returncode not in (0, 1) or not text.strip():
        record["stderr_tail"] = stderr_path.read_text()[-2000:]
        return record
    obj = json.loads(text)
    record.update(
        {
            "stages": obj.get("stages"),
            "peak_rss_mb": obj.get("peak_rss_mb"),
            "seconds": obj.get("seconds"),
            "sensitivity": {k: obj["sensitivity"].get(k) for k in ("form", "estimator", "draws", "reason")},
            "status": obj.get("status"),
            "layers": len(obj.get("layers", [])),
            "accuracy": obj.get("accuracy"),
            "verify": obj.get("verify"),
            "predicted": obj.get("predicted"),
            "device": obj.get("device"),
            "threads": obj.get("threads"),
            "settings": obj.get("settings"),
        }
    )
    goals = GOALS.get(model, {})
    if goals:
        met = {}
        if "peak_rss_mb" in goals:
            met["peak_rss_mb"] = record["subprocess_max_rss_mb"] <= goals["peak_rss_mb"]
        if "seconds" in goals:
            met["seconds"] = wall <= goals["seconds"]
        record["goals"] = {**goals, "met": met}
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated timm model names")
    parser.add_argument("--threads", type=int, help="passed to mixbit --threads (default: mixbit's own default)")
    parser.add_argument("--merge", action="store_true", help="keep other models' entries of the previous JSON")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--note", help="added to the machine record (e.g. what else ran at the same time)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    previous = json.loads(args.results.read_text()) if args.merge and args.results.exists() else {}
    results: dict[str, Any] = {
        "target": TARGET,
        "latency_of": LATENCY_OF,
        "data": {
            "layout": "ImageNet (train/ + val/)",
            "classes": CLASSES,
            "per_class_each_side": PER_CLASS,
            "image_px": IMAGE_PX,
            "kind": "random RGB PNGs, one mean colour per class",
        },
        "settings": "mixbit allocate defaults (no sensitivity, calibration, baseline or verify flags)",
        "machine": {
            "node": platform.node(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg()),
            "note": "shared 2-core machine; other engineers' tests and benches ran at the same time (1-minute "
            "load per model in the table); models run one after another, each in its own subprocess",
        },
        "models": dict(previous.get("models", {})),
    }
    if args.note:
        results["machine"]["note"] += f"; {args.note}"
    with tempfile.TemporaryDirectory(prefix="pipeline_scale_") as tmp:
        work = Path(tmp)
        data = make_folder(work / "images")
        for model in models:
            print(f"{model}: running", file=sys.stderr, flush=True)
            record = run_model(model, data, work, args.threads)
            results["models"][model] = record
            stages = ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in record.get("stages") or [])
            print(
                f"{model}: exit {record['exit_status']}, {record['wall_seconds']:.0f} s, max RSS "
                f"{record['subprocess_max_rss_mb']:.0f} MB; {stages}",
                flush=True,
            )
            results["machine"]["load_average_at_end"] = list(os.getloadavg())
            args.results.parent.mkdir(parents=True, exist_ok=True)
            temporary = args.results.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(results, indent=1) + "\n")
            os.replace(temporary, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
