"""Patch-wise (token-split) against layer-wise bit plans at equal latency on the digits testbed (issue #19 item 1).

Model: the shipped ``mixbit_vit_digits`` checkpoint (4 blocks, dim 64, 17 tokens). Target: ``bitfusion_16x32``
(its ``[accelerator.patchwise]`` sorts tokens; 16 array rows, so the 17 tokens take two row tiles and a split can
run one of them at fewer bits). Ω: the pipeline's Hessian quadratic form on 256 training images. For each latency
budget (the predicted latency of uniform W4A4 and W3A4 plans) and token fraction f:

- ``layerwise``: the ILP over layer-wise choices only;
- ``mixed``: the ILP with the token-split options added (``allocate --patchwise f``; Ω from the norm shares, and
  ``mixed_cls_attn`` from the class-token attention shares);
- ``patchwise``: the ILP with every Linear GEMM (qkv, proj, fc1, fc2) forced to a token-split option, tokens
  ranked by the L1 norm; ``patchwise_cls_attn``: the same bits, tokens ranked by class-token attention;
- ``*_random``: the same bits with random token groups (the control: same latency, groups chosen blind).

Each plan is quantized, calibrated (MSE, 256 images) and evaluated on the 450 test images with 3 calibration seeds;
latency is ``sim.simulate`` of the whole plan (token splits included). Ratios are against the layer-wise plan at
the same budget. The integer-only model is checked against the fake-quant exact mode on 64 test images for the
patch-wise plans. Also: how many layers the ILP splits on zcu102 (28 array rows: one row tile holds all 17 tokens)
and u250 (no token sort). Run: ``.venv/bin/python bench/patchwise.py`` → ``bench/results/patchwise.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import sim  # noqa: E402
from allocator.bridge.workload import workload_from_model  # noqa: E402
from allocator.ilp.model import Allocation, Limits, allocate  # noqa: E402
from allocator.ilp.patchwise import split_layers, with_token_splits  # noqa: E402
from allocator.ilp.problem import Problem, build_problem  # noqa: E402
from allocator.pipeline.run import predicted_uniform, quantized_accuracy, score_options  # noqa: E402
from allocator.sensitivity.tokens import token_shares  # noqa: E402
from quant.checkpoint import load_model  # noqa: E402
from quant.plan import BitPlan  # noqa: E402
from quant.testbed import evaluate, load_data  # noqa: E402
from quant.verify import verify_bit_exact  # noqa: E402

MODEL = "mixbit_vit_digits"
TARGET = "bitfusion_16x32"
OTHER_TARGETS = ("zcu102", "u250")
BUDGETS = ((4, 4), (3, 4))
FRACTIONS = (0.25, 0.5)
CALIB_SEEDS = (0, 1, 2)
SENSITIVITY_IMAGES = 256
CALIB_IMAGES = 256
VERIFY_IMAGES = 64
SEED = 0
RESULTS = ROOT / "bench" / "results" / "patchwise.json"


def forced_split(problem: Problem, layers: list[str]) -> Problem:
    """``problem`` with the layer-wise options of ``layers`` removed: each must take a token split."""
    frame = problem.to_frame()
    keep = ~(frame["layer"].isin(layers) & (frame["abits_low"] == 0))
    return Problem.from_frame(
        frame[keep],
        clock_mhz=problem.clock_mhz,
        layers=problem.layers,
        fixed_cycles=problem.fixed_cycles,
        onchip_capacity_bits=problem.onchip_capacity_bits,
        model=problem.model,
        fixed_energy_mj=problem.fixed_energy_mj,
    )


def plan_of(allocation: Allocation, score: str = "norm") -> BitPlan:
    layers = {}
    for name, bits in allocation.plan()["layers"].items():
        layers[name] = {**bits, "token_score": score} if "abits_low" in bits else bits
    return BitPlan.from_dict({"model": MODEL, "layers": layers})


def simulated_ms(workload: sim.Workload, target: sim.Target, allocation: Allocation) -> float:
    bits = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    splits = {c.layer: sim.TokenSplit(c.abits_low, c.token_fraction) for c in allocation.chosen if c.abits_low}
    return sim.simulate(workload, target, bits, token_splits=splits).latency_ms


def main() -> None:
    torch.set_num_threads(1)
    began = time.perf_counter()
    load_start = os.getloadavg()
    net, _ = load_model(MODEL)
    net.eval()
    split = load_data("digits", img_size=16, channels=1, seed=SEED)
    target = sim.load_target(TARGET)
    workload = workload_from_model(net)
    accel = target.accelerator
    pairs = [(w, a) for w in accel.weight_bits for a in accel.act_bits]
    pick = torch.randperm(len(split.x_train), generator=torch.Generator().manual_seed(SEED))[:SENSITIVITY_IMAGES]
    images = split.x_train[pick]
    t0 = time.perf_counter()
    scores = score_options(net, (images, split.y_train[pick]), pairs, seed=SEED)
    score_s = time.perf_counter() - t0
    problem = build_problem(workload, target, scores, pairs)
    layers = split_layers(workload)

    def accuracy(plan: BitPlan) -> dict[str, Any]:
        values, model = [], None
        for seed in CALIB_SEEDS:
            model, value, _ = quantized_accuracy(net, plan, split, calib_images=CALIB_IMAGES, seed=seed)
            values.append(float(value))
        return {"accuracy_mean": statistics.mean(values), "accuracy_per_seed": values, "model": model}

    def row(allocation: Allocation, plan: BitPlan, base: dict[str, Any] | None) -> dict[str, Any]:
        measured = accuracy(plan)
        model = measured.pop("model")
        latency = simulated_ms(workload, target, allocation)
        out = {
            "objective": allocation.objective,
            "predicted_latency_ms": allocation.predicted.latency_ms,
            "simulated_latency_ms": latency,
            "split_layers": sum(1 for c in allocation.chosen if c.abits_low),
            **measured,
            "plan": {c.layer: [c.wbits, c.abits, c.abits_low] for c in allocation.chosen},
        }
        if base is not None:
            out["accuracy_ratio"] = out["accuracy_mean"] / base["accuracy_mean"]
            out["latency_ratio"] = latency / base["simulated_latency_ms"]
        if any(c.abits_low for c in allocation.chosen):
            report = verify_bit_exact(model, split.x_test[:VERIFY_IMAGES])
            out["verify"] = {"images": VERIFY_IMAGES, "checked": report.checked, "mismatches": report.mismatches}
        return out

    shares = {f: token_shares(net, images, f, layers) for f in FRACTIONS}
    cls_shares = {f: token_shares(net, images, f, layers, score="cls_attn") for f in FRACTIONS}
    random_shares = {f: token_shares(net, images, f, layers, score="random") for f in FRACTIONS}
    budgets = []
    for wbits, abits in BUDGETS:
        limit = predicted_uniform(problem, wbits, abits)["latency_ms"]
        limits = Limits(latency_ms=limit)
        layerwise_alloc = allocate(problem, limits).check()
        layerwise = row(layerwise_alloc, plan_of(layerwise_alloc), None)
        entry: dict[str, Any] = {"budget": f"latency of uniform W{wbits}A{abits}", "latency_ms_limit": limit}
        entry["layerwise"] = layerwise
        for fraction in FRACTIONS:
            split_problem = with_token_splits(problem, workload, target, fraction, shares[fraction], layers=layers)
            mixed_alloc = allocate(split_problem, limits).check()
            cls_problem = with_token_splits(problem, workload, target, fraction, cls_shares[fraction], layers=layers)
            mixed_cls_alloc = allocate(cls_problem, limits).check()
            forced_alloc = allocate(forced_split(split_problem, layers), limits).check()
            per_fraction = {
                "mixed": row(mixed_alloc, plan_of(mixed_alloc), layerwise),
                "mixed_cls_attn": row(mixed_cls_alloc, plan_of(mixed_cls_alloc, "cls_attn"), layerwise),
                "patchwise": row(forced_alloc, plan_of(forced_alloc), layerwise),
                "patchwise_cls_attn": row(forced_alloc, plan_of(forced_alloc, "cls_attn"), layerwise),
                "patchwise_random": row(forced_alloc, plan_of(forced_alloc, "random"), layerwise),
            }
            if per_fraction["mixed"]["split_layers"]:
                per_fraction["mixed_random"] = row(mixed_alloc, plan_of(mixed_alloc, "random"), layerwise)
            if per_fraction["mixed_cls_attn"]["split_layers"]:
                control = plan_of(mixed_cls_alloc, "random")
                per_fraction["mixed_cls_attn_random"] = row(mixed_cls_alloc, control, layerwise)
            entry[f"fraction_{fraction:g}"] = per_fraction
            print_budget(entry["budget"], fraction, layerwise, per_fraction)
        budgets.append(entry)

    others = {}
    for name in OTHER_TARGETS:
        other = sim.load_target(name)
        other_pairs = [(w, a) for w in other.accelerator.weight_bits for a in other.accelerator.act_bits]
        other_problem = build_problem(workload, other, scores, other_pairs)
        limit = predicted_uniform(other_problem, 4, 4)["latency_ms"]
        counts = {}
        for fraction in FRACTIONS:
            allocation = allocate(
                with_token_splits(other_problem, workload, other, fraction, shares[fraction], layers=layers),
                Limits(latency_ms=limit),
            ).check()
            counts[f"{fraction:g}"] = sum(1 for c in allocation.chosen if c.abits_low)
        others[name] = {
            "patchwise": vars(other.accelerator.patchwise),
            "array_rows": other.accelerator.rows,
            "split_layers_chosen_at_W4A4_latency": counts,
        }
        print(f"{name}: split layers chosen at the W4A4 latency: {counts}")

    result = {
        "machine": {
            "node": platform.node(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_1_5_15_start": load_start,
            "loadavg_1_5_15_end": os.getloadavg(),
        },
        "model": MODEL,
        "target": TARGET,
        "tokens": workload.gemms[1].m,
        "fp32_accuracy": float(evaluate(net, split.x_test, split.y_test)),
        "test_images": len(split.x_test),
        "sensitivity": f"Hessian quadratic form (allocator.pipeline.score_options, {SENSITIVITY_IMAGES} images)",
        "sensitivity_seconds": score_s,
        "token_score": "norm: L1 of the high-bit integers; cls_attn: class-token attention of the latest block "
        "(quant/tokens.py); control: seeded random tokens",
        "token_shares": {f"{f:g}": shares[f] for f in FRACTIONS},
        "cls_attn_token_shares": {f"{f:g}": cls_shares[f] for f in FRACTIONS},
        "random_token_shares": {f"{f:g}": random_shares[f] for f in FRACTIONS},
        "calibration_seeds": list(CALIB_SEEDS),
        "budgets": budgets,
        "other_targets": others,
        "seconds": time.perf_counter() - began,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} in {result['seconds']:.0f} s")


def print_budget(budget: str, fraction: float, layerwise: dict[str, Any], rows: dict[str, Any]) -> None:
    print(
        f"{budget}, f = {fraction:g}: layer-wise {layerwise['accuracy_mean']:.4f} at "
        f"{layerwise['simulated_latency_ms']:.5f} ms"
    )
    for name, r in rows.items():
        verify = r.get("verify", {}).get("mismatches", "-")
        print(
            f"  {name:<17} acc {r['accuracy_mean']:.4f} (x{r['accuracy_ratio']:.4f}), latency "
            f"{r['simulated_latency_ms']:.5f} ms (x{r['latency_ratio']:.4f}), {r['split_layers']} split layers, "
            f"mismatches {verify}"
        )


if __name__ == "__main__":
    main()
