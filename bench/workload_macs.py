"""Recorded workloads against published MAC totals, and what recording costs next to a plain forward pass.

Published GMACs (batch 1, 224×224): DeiT-S 4.6 and ViT-B 17.6 from the DeiT paper (Touvron et al., ICML 2021,
Table 1); Swin-T 4.5 from the Swin paper (Liu et al., ICCV 2021, Table 1). Run from the repository root:
``.venv/bin/python -m bench.workload_macs`` (``-m``: a script run by path would import ``bench/allocator.py``
in place of the ``allocator`` package); prints a table and writes ``bench/results/workload_macs.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

torch.set_num_threads(2)

from allocator.bridge.workload import workload_from_model  # noqa: E402
from quant.models import create_model  # noqa: E402

PUBLISHED_GMACS = {"deit_small_patch16_224": 4.6, "vit_base_patch16_224": 17.6, "swin_tiny_patch4_window7_224": 4.5}
REPEATS = 3


def _best_seconds(fn, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str) -> dict:
    start = time.perf_counter()
    model = create_model(name)
    build_s = time.perf_counter() - start
    workload = workload_from_model(model)
    image = torch.randn(1, 3, 224, 224)

    def forward() -> None:
        with torch.no_grad():
            model(image)

    forward()  # warm-up
    record_s = _best_seconds(lambda: workload_from_model(model))
    forward_s = _best_seconds(forward)
    gemms = workload.gemms
    attention = [g for g in gemms if g.kind in ("attn_qk", "attn_av")]
    weight_macs = sum(g.macs for g in gemms if g.b_is_weight)
    published = PUBLISHED_GMACS[name] * 1e9
    return {
        "model": name,
        "gmacs": workload.macs / 1e9,
        "published_gmacs": PUBLISHED_GMACS[name],
        "deviation_pct": 100 * (workload.macs / published - 1),
        "gmacs_without_attention_matmuls": weight_macs / 1e9,
        "deviation_without_attention_matmuls_pct": 100 * (weight_macs / published - 1),
        "weight_gemms": sum(g.b_is_weight for g in gemms),
        "attention_matmul_nodes": len(attention),
        "vector_ops": len(workload.vector_ops),
        "edges": workload.graph.number_of_edges(),
        "build_s": build_s,
        "record_s": record_s,
        "plain_forward_s": forward_s,
        "record_over_forward": record_s / forward_s,
    }


def main() -> None:
    load_before = os.getloadavg()
    rows = [measure(name) for name in PUBLISHED_GMACS]
    load_after = os.getloadavg()
    columns = ("GMACs", "publ.", "dev %", "w/o attn %", "rec s", "fwd s", "ratio")
    print(f"{'model':32} " + " ".join(f"{c:>{10 if c == 'w/o attn %' else 6}}" for c in columns))
    for r in rows:
        print(
            f"{r['model']:32} {r['gmacs']:7.3f} {r['published_gmacs']:6.1f} {r['deviation_pct']:6.2f} "
            f"{r['deviation_without_attention_matmuls_pct']:10.2f} {r['record_s']:6.3f} {r['plain_forward_s']:6.3f} "
            f"{r['record_over_forward']:6.2f}"
        )
    result = {
        "bench": "workload_macs",
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "note": (
            "shared 2-core machine; other engineers' tests/benches may have been running: 1-min load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. Times are best of {REPEATS}."
        ),
        "results": rows,
    }
    out = Path(__file__).parent / "results" / "workload_macs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
