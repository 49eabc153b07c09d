"""The whole pipeline on timm Swin-T with the integer-only check and detection costs, in one ``mixbit allocate`` run.

``mixbit allocate --model swin_tiny_patch4_window7_224 --verify --detection`` on zcu102 with the latency of uniform
W6A6 as the budget, small settings for a shared 2-core machine (scores on 4 images with 2 random-sign draws,
calibration on 8, evaluation on 20, the integer check on 2 images, no Pareto sweep), on an ImageNet-layout folder
of random RGB images (``bench/pipeline_scale.make_folder``: random weights, so accuracy means nothing here).
``--detection`` costs every plan as the Swin-T backbone at 800×1333 (800×1344 padded) with its FPN neck at fixed
bits. Recorded: the JSON's status, predicted latency, verify {checked, mismatches}, the detection block, each
stage's seconds and peak RSS, the subprocess's wall seconds and max RSS, and the machine's load.

Usage: .venv/bin/python bench/swin_pipeline.py [--out bench/results/swin_pipeline.json]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

MODEL = "swin_tiny_patch4_window7_224"
TARGET = "zcu102"
SETTINGS = [
    "--latency-of", "W6A6",
    "--verify", "--verify-images", "2",
    "--detection",
    "--sensitivity-images", "4", "--quadratic-draws", "2",
    "--calib-images", "8", "--eval-images", "20", "--pareto-points", "0",
    "--threads", "1",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "swin_pipeline.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from pipeline_scale import make_folder  # the same random image folder as the real-model benchmark

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mixbit-swin-") as work_dir:
        work = Path(work_dir)
        data = make_folder(work / "data")
        command = [str(Path(sys.executable).with_name("mixbit")), "allocate", "--target", TARGET, "--model", MODEL]
        command += ["--data", str(data), *SETTINGS, "--json", "--out", str(work / "out")]
        start = time.perf_counter()
        with open(work / "stdout", "w") as stdout, open(work / "stderr", "w") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - start
        exit_code = os.waitstatus_to_exitcode(status)
        text = (work / "stdout").read_text()
        error = (work / "stderr").read_text().strip().splitlines()[-1:] if exit_code else []
    obj = json.loads(text) if text.strip() else {}
    record = {
        "benchmark": "swin_pipeline",
        "machine": {
            "node": platform.node(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(v, 2) for v in load_start],
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "note": "shared 2-core machine: other engineers' work ran at the same time (see load averages)",
        },
        "model": MODEL,
        "target": TARGET,
        "command": ["mixbit", *command[1:]],
        "exit_code": exit_code,
        "error": error,
        "wall_seconds": round(wall_s, 1),
        "subprocess_max_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "status": obj.get("status"),
        "predicted": obj.get("predicted"),
        "verify": obj.get("verify"),
        "detection": obj.get("detection"),
        "stages": obj.get("stages"),
        "peak_rss_mb": obj.get("peak_rss_mb"),
        "layers": len(obj.get("layers", [])),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    verify = record["verify"] or {}
    print(
        f"{MODEL} on {TARGET}: exit {exit_code}, status {record['status']}, {wall_s:.0f} s, "
        f"max RSS {record['subprocess_max_rss_mb']} MiB; verify {verify.get('mismatches')} mismatches of "
        f"{verify.get('checked')}; neck {(record['detection'] or {}).get('neck_cycles')} cycles"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
