"""Detection backbones simulated: Swin-T (and Swin-S, DeiT-S) at 800×1333 with an FPN neck on u250 and zcu102.

Each model is recorded once (``allocator.bridge.detection.detection_workload``: the backbone at 800×1333 padded to
800×1344, four feature maps, mmdetection's FPN with 256 channels) and simulated on each target at uniform W8A8 and
W4A4 (``sim.simulate``, the target's own array, dataflow and memory). Recorded per run: total cycles, latency,
whether the design fits, the design's resources (DSP, LUT, FF, BRAM36, URAM: one accelerator runs every stage, so
resources are per design, not per stage), and per stage (stage1..4 and the neck) cycles, latency, MACs, weight
bytes at those bits and DRAM bytes read and written. Seconds to record and to simulate, the machine and its load.

Detection accuracy needs COCO, which is not shipped: these are costs only (backbone + FPN; no RPN/ROI or dense heads).

Usage: .venv/bin/python bench/detection.py [--models NAME ...] [--out bench/results/detection.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

import sim  # noqa: E402
from allocator.bridge.detection import (  # noqa: E402
    DETECTION_NOTE,
    DETECTION_SIZE,
    FPN_CHANNELS,
    detection_workload,
    padded_size,
    stage_totals,
    workload_taps,
)

MODELS = ("swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "deit_small_patch16_224")
TARGETS = ("u250", "zcu102")
BITS = ((8, 8), (4, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "detection.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()
    runs = []
    for model in args.models:
        start = time.perf_counter()
        workload = detection_workload(model, DETECTION_SIZE)
        record_s = time.perf_counter() - start
        taps = workload_taps(workload)
        for target_name in TARGETS:
            target = sim.load_target(target_name)
            for wbits, abits in BITS:
                start = time.perf_counter()
                result = sim.simulate(workload, target, (wbits, abits))
                simulate_s = time.perf_counter() - start
                res = result.resources
                stages = [s.to_json() for s in stage_totals(workload, result, taps)]
                runs.append(
                    {
                        "model": model,
                        "workload": workload.name,
                        "target": target_name,
                        "wbits": wbits,
                        "abits": abits,
                        "gemms": len(workload.gemms),
                        "macs": workload.macs,
                        "cycles": result.cycles,
                        "latency_ms": result.latency_ms,
                        "clock_mhz": result.clock_mhz,
                        "array": f"{result.rows}x{result.cols} {result.dataflow}",
                        "fits": result.fits,
                        "resources": {
                            "dsp": res.dsp,
                            "lut": res.lut,
                            "ff": res.ff,
                            "bram36": res.bram36,
                            "uram": res.uram,
                        },
                        "bytes_read": result.bytes_read,
                        "bytes_written": result.bytes_written,
                        "energy_mj": result.energy_mj,
                        "stages": stages,
                        "record_seconds": round(record_s, 2),
                        "simulate_seconds": round(simulate_s, 2),
                    }
                )
                parts = ", ".join(f"{s['stage']} {s['latency_ms']:.2f}" for s in stages)
                print(
                    f"{model} on {target_name} W{wbits}A{abits}: {result.cycles:,} cycles, {result.latency_ms:.2f} ms "
                    f"({parts} ms); DSP {res.dsp} LUT {res.lut} BRAM36 {res.bram36} URAM {res.uram}; fits {result.fits}"
                )
    result_json = {
        "benchmark": "detection",
        "machine": {
            "node": platform.node(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in load_start],
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "note": "shared 2-core machine: seconds only; the cycles do not depend on the load",
        },
        "img_size": list(DETECTION_SIZE),
        "padded_size": list(padded_size(DETECTION_SIZE)),
        "fpn_channels": FPN_CHANNELS,
        "note": DETECTION_NOTE,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result_json, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
