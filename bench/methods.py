"""The seed papers' allocation methods side by side on the digits testbed (issue #19 items 2 and 3).

1. Ranking: each scorer's predicted Ω increase against the measured single-layer loss increase (Spearman, pooled
   over layers and the settings weight 2/3 bits, activation 3/4 bits, as ``bench/sensitivity.py``'s quality
   part, whose damage measurement this reuses), and its wall time. Scorers: the Hessian quadratic form ΔᵀHΔ (the
   default), raw Fisher, Fisher with each operand scaled by its type mean (``--sensitivity fisher``), LampQ's
   type-aware Fisher (``fisher-type``), PMQ's metric in HTQ's form (``pmq``; and on re-initialised weights, as
   HTQ's code does).
2. Plans at equal latency: ``run_pipeline`` (what ``mixbit allocate`` runs) on the shipped digits checkpoint on
   zcu102 with the latency limit of uniform W4A4 and of W3A3, for each scorer with the ILP, and PMQ's scores with
   PMQ's Pareto search: accuracy and test loss of the plan, its Ω, predicted latency, scoring and solve seconds.
3. LampQ's iterative update: ``run_pipeline(refine=3)`` with the type-aware Fisher and with the Hessian at the
   W3A3 latency: Ω, predicted latency and accuracy per round.
4. PMQ's Pareto search against the ILP on a DeiT-S-size problem (random Ω): seconds and Ω of each.

    .venv/bin/python bench/methods.py [--threads N] [--only ranking|plans|refine|pareto_scale ...]

Prints the figures and writes bench/results/methods.json (machine and load average recorded).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from allocator.sensitivity import (  # noqa: E402
    FisherConfig,
    HessianQuadraticConfig,
    PMQConfig,
    TypeAwareFisherConfig,
    quantizable_layers,
    score,
)

RESULTS = ROOT / "bench" / "results" / "methods.json"
TARGET = "zcu102"
PAIRS = [(2, 8), (3, 8), (8, 3), (8, 4), (8, 8)]
SCORERS: dict[str, Any] = {
    "hessian_quadratic": HessianQuadraticConfig(batch_size=None, progress=False),
    "fisher_raw": FisherConfig(normalize=False, batch_size=None, progress=False),
    "fisher_per_operand_type_mean": FisherConfig(normalize=True, batch_size=None, progress=False),
    "fisher_type_lampq": TypeAwareFisherConfig(batch_size=None, progress=False),
    "pmq": PMQConfig(batch_size=None, progress=False),
    "pmq_reinit_htq": PMQConfig(reinit=True, batch_size=None, progress=False),
}
PIPELINE_SCORERS = {"hessian": "ilp", "fisher": "ilp", "fisher-type": "ilp", "pmq": "ilp"}
BUDGETS = [(4, 4), (3, 3)]


def _sensitivity_bench() -> Any:
    """bench/sensitivity.py as a module (its trained-model loader and single-layer damage measurement)."""
    spec = importlib.util.spec_from_file_location("bench_sensitivity", ROOT / "bench" / "sensitivity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def ranking() -> dict[str, Any]:
    from quant import QuantConfig, quantize_

    sb = _sensitivity_bench()
    model, split, source = sb._load_trained(quick=False)
    calib = split.x_train[:128]
    sens_data = [(split.x_train[i : i + 128], split.y_train[i : i + 128]) for i in range(0, 256, 128)]
    x_all, y_all = torch.cat([split.x_train, split.x_test]), torch.cat([split.y_train, split.y_test])
    traced = quantize_(copy.deepcopy(model), QuantConfig(wbits=8, abits=8)).eval()
    layers = quantizable_layers(traced)
    start = time.perf_counter()
    base, measured = sb._measured_damage(model, layers, calib, x_all, y_all)
    measure_s = time.perf_counter() - start
    out: dict[str, Any] = {
        "model": source,
        "layers": len(layers),
        "images_scored": 256,
        "damage_measured_on": "all 1,797 digits, each GEMM alone at W2/W3 (weights) or A3/A4, the rest W8A8",
        "baseline_w8a8_test_loss": base,
        "measure_seconds": measure_s,
    }
    for name, config in SCORERS.items():
        start = time.perf_counter()
        table = score(traced, sb.LOSS, sens_data, PAIRS, config, calibration=[(calib, None)])
        seconds = time.perf_counter() - start
        per_setting = {}
        for operand, bits in sb.SETTINGS:
            pred = [sb._predicted(table, n, operand, bits) for n in layers]
            per_setting[f"{operand}{bits}"] = float(
                spearmanr(pred, [measured[(n, operand, bits)] for n in layers]).statistic
            )
        out[name] = {
            "spearman_pooled": sb._pooled_spearman(table, measured, layers),
            "per_setting": per_setting,
            "seconds": seconds,
            "estimator": table.attrs.get("estimator", {}),
        }
        if "type_scales" in table.attrs:
            out[name]["type_scales"] = table.attrs["type_scales"]
        _log(f"ranking {name}: Spearman {out[name]['spearman_pooled']:.3f}, {seconds:.1f} s")
    out["fisher_type_scale_variants"] = _scale_variants(sb, traced, sens_data, calib, layers, measured)
    return out


def _scale_variants(
    sb: Any, traced: Any, sens_data: Any, calib: torch.Tensor, layers: list[str], measured: dict
) -> dict[str, Any]:
    """LampQ's α_t is not published in what we could read: other readings of "one scale per component type",
    applied to the same raw Fisher traces, ranked the same way (what the choice of α_t is worth here)."""
    import dataclasses

    import numpy as np

    from allocator.sensitivity import component_type, fisher_traces, quantization_errors, scores_from_traces

    raw = fisher_traces(traced, sb.LOSS, sens_data, normalize=False, progress=False)
    errors = quantization_errors(traced, [(calib, None)], [2, 3, 8], [3, 4, 8], layers=list(raw.layers))
    kinds = [component_type(n) for n in raw.layers]
    weight_pe = np.array(raw.weight_trace) / np.maximum(np.array(raw.weight_numel), 1)
    act_pe = np.array(raw.act_trace) / np.maximum(np.array(raw.act_numel), 1)

    def by_type(values: np.ndarray, reduce: Any) -> np.ndarray:
        scale = {k: reduce(values[[i for i, t in enumerate(kinds) if t == k]]) for k in set(kinds)}
        return np.array([1.0 / scale[k] if scale[k] > 0 else 1.0 for k in kinds])

    variants = {
        "weight_mean_per_element (fisher-type)": by_type(weight_pe, np.mean),
        "weight_median_per_element": by_type(weight_pe, np.median),
        "weight_sum_total_trace": by_type(np.array(raw.weight_trace), np.sum),
        "layer_mean_weight_plus_act_per_element": by_type(weight_pe + np.nan_to_num(act_pe), np.mean),
        "weight_max_per_element": by_type(weight_pe, np.max),
    }
    out = {}
    for name, alpha in variants.items():
        scaled = dataclasses.replace(
            raw,
            weight_trace=tuple(np.array(raw.weight_trace) * alpha),
            act_trace=tuple(np.array(raw.act_trace) * alpha),
        )
        table = scores_from_traces(scaled, errors, PAIRS)
        out[name] = sb._pooled_spearman(table, measured, layers)
        _log(f"α_t variant {name}: Spearman {out[name]:.3f}")
    return out


def _run(sensitivity: str, solver: str, budget: tuple[int, int], refine: int | None = None) -> dict[str, Any]:
    from allocator.pipeline.run import run_pipeline

    start = time.perf_counter()
    result = run_pipeline(
        "mixbit_vit_digits",
        TARGET,
        data="digits",
        latency_of=budget,
        sensitivity=sensitivity,
        solver=solver,
        refine=refine,
        pareto_points=0,
        baselines=(budget,),
    )
    a = result.allocation
    stage = {s.name: s.seconds for s in result.stages}
    row = {
        "sensitivity": sensitivity,
        "solver": solver,
        "latency_limit_ms": a.limits.latency_ms,
        "latency_ms": a.predicted.latency_ms,
        "objective": a.objective,
        "accuracy": result.accuracy,
        "test_loss": result.test_loss,
        "uniform_accuracy": result.baselines[0].accuracy,
        "uniform_test_loss": result.baselines[0].test_loss,
        "score_seconds": stage["scores"],
        "solve_seconds": a.solve_seconds,
        "solve_stage_seconds": stage["solve"],
        "wall_seconds": time.perf_counter() - start,
        "plan": {c.layer: f"W{c.wbits}A{c.abits}" for c in a.chosen},
    }
    if refine:
        row["refine_stage_seconds"] = stage.get("refine")
        row["rounds"] = [r.to_json() for r in result.refine_rounds]
    return row


def plans() -> dict[str, Any]:
    from quant.testbed import load_digits_split

    test_images = len(load_digits_split().x_test)
    out: dict[str, Any] = {
        "fp32_note": f"accuracy on the digits test split ({test_images} images; one image is "
        f"{100 / test_images:.2f} points) after calibration on 256 training images"
    }
    for w, a in BUDGETS:
        label = f"latency_of_W{w}A{a}"
        rows = {}
        for sensitivity, solver in [*PIPELINE_SCORERS.items(), ("pmq", "pareto")]:
            row = _run(sensitivity, solver, (w, a))
            rows[f"{sensitivity}+{solver}"] = row
            _log(
                f"{label} {sensitivity}+{solver}: accuracy {row['accuracy']:.4f}, loss {row['test_loss']:.4f}, "
                f"{row['latency_ms']:.5f} ms, score {row['score_seconds']:.1f} s, solve {row['solve_seconds']:.3f} s"
            )
        ilp, pareto = rows["pmq+ilp"], rows["pmq+pareto"]
        rows["pmq_pareto_vs_ilp"] = {
            "same_plan": ilp["plan"] == pareto["plan"],
            "objective_ratio": pareto["objective"] / ilp["objective"],
            "solve_seconds": {"ilp": ilp["solve_seconds"], "pareto": pareto["solve_seconds"]},
        }
        out[label] = rows
    return out


def refine() -> dict[str, Any]:
    out = {}
    for sensitivity in ("fisher-type", "hessian"):
        row = _run(sensitivity, "ilp", BUDGETS[-1], refine=3)
        out[f"{sensitivity}_W{BUDGETS[-1][0]}A{BUDGETS[-1][1]}"] = row
        for r in row["rounds"]:
            _log(f"refine {sensitivity} round {r['round']}: Ω {r['objective']:.4g}, {r['latency_ms']:.5f} ms, "
                 f"accuracy {r['accuracy']:.4f}, changed {r['changed_layers']}")  # fmt: skip
    return out


def pareto_scale() -> dict[str, Any]:
    """PMQ's Pareto search against the ILP on a DeiT-S-size problem: bench/allocator.py's problem (74 GEMMs × 25
    bit pairs on zcu102, seeded random Ω), one latency limit at 30 % and 60 % of the way from the fastest plan's
    latency to the slowest's: wall seconds of each solver and their Ω."""
    spec = importlib.util.spec_from_file_location("bench_allocator", ROOT / "bench" / "allocator.py")
    assert spec is not None and spec.loader is not None
    ba = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ba)
    import sim
    from allocator.ilp.model import Limits, allocate
    from allocator.ilp.problem import build_problem

    workload, source = ba.deit_small_workload()
    torch.set_num_threads(1)  # deit_small_workload sets 2
    problem = build_problem(workload, sim.load_target(TARGET), ba.random_sensitivity(workload), ba.BIT_PAIRS)
    low = sum(problem.latency_cycles[r].min() for r in problem.choice_rows)
    high = sum(problem.latency_cycles[r].max() for r in problem.choice_rows)
    out: dict[str, Any] = {"problem": f"{ba.MODEL} on {TARGET}: {len(problem.layers)} layers, {len(problem)} options",
                           "workload": source, "sensitivity": "random, seeded (bench/allocator.py)"}  # fmt: skip
    for fraction in (0.3, 0.6):
        limits = Limits(latency_ms=problem.cycles_to_ms(problem.fixed_cycles + low + fraction * (high - low)))
        row: dict[str, Any] = {"latency_limit_ms": limits.latency_ms}
        for method in ("ilp", "pmq-pareto"):
            start = time.perf_counter()
            allocation = allocate(problem, limits, method=method)  # type: ignore[arg-type]
            row[method] = {"seconds": time.perf_counter() - start, "status": allocation.status,
                           "objective": allocation.objective}  # fmt: skip
        row["same_objective"] = math.isclose(row["ilp"]["objective"], row["pmq-pareto"]["objective"], rel_tol=1e-9)
        out[f"latency_{int(fraction * 100)}_percent"] = row
        _log(f"pareto scale {fraction}: ilp {row['ilp']['seconds']:.2f} s, pareto {row['pmq-pareto']['seconds']:.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: others share the cores)")
    parser.add_argument("--only", choices=["ranking", "plans", "refine", "pareto_scale"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = {"ranking": ranking, "plans": plans, "refine": refine, "pareto_scale": pareto_scale}
    chosen = args.only or list(parts)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else {}
    results["machine"] = {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "note": "shared 2-core machine; other engineers' tests and benches were running (see load averages)",
    }
    for part in chosen:
        start = time.perf_counter()
        load_at_start = os.getloadavg()
        results[part] = parts[part]()
        results[part]["load_average_at_start"] = load_at_start
        results[part]["seconds"] = time.perf_counter() - start
        results[part]["load_average_at_end"] = os.getloadavg()
        print(f"[{part}] {results[part]['seconds']:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(json.dumps(results, indent=1, default=float))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
