"""Regenerate README.md's results block from bench/results/*.json, and the results image under docs/.

Every number in the block is read from a benchmark's JSON file (none typed by hand); each table names the
machine and load notes its JSON recorded. A missing result file gives a one-line note instead of a table.
The image is the Pareto front of the digits testbed pipeline (``allocator.run_pipeline`` with small settings).

    .venv/bin/python scripts/readme_results.py            # rewrite the block and docs/results.png
    .venv/bin/python scripts/readme_results.py --no-plot  # rewrite the block only
    .venv/bin/python scripts/readme_results.py --check    # exit 1 if the block is stale (nothing written)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "render_block", "replace_block", "write_plot"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
IMAGE = ROOT / "docs" / "results.png"
START = "<!-- results:start -->"
END = "<!-- results:end -->"
MISSING = "—"


def _dig(obj: Any, *path: str | int) -> Any:
    """``obj[path[0]][path[1]]...`` or None where any step is absent."""
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -(digits + 1)):
            return f"{value:.{digits}g}{suffix}" if abs(value) < 1e5 else f"{value:,.0f}{suffix}"
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _pct(value: Any) -> str:
    return MISSING if value is None else f"{100 * float(value):.2f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _machine(data: dict[str, Any]) -> str:
    """One line from the JSON's machine record: node, CPUs, load averages, notes (keys vary between benches)."""
    machine = data.get("machine", {}) if isinstance(data.get("machine"), dict) else {}
    parts = []
    if "node" in machine:
        parts.append(f"node `{machine['node']}`")
    cpus = machine.get("cpu_count", machine.get("cpus"))
    if cpus is not None:
        parts.append(f"{cpus} CPUs")
    for source in (machine, data):
        for key, value in source.items():
            if "load" in key and isinstance(value, list) and value:
                shown = ", ".join(f"{float(v):.1f}" for v in value[:3])
                parts.append(f"{key.replace('_', ' ')}: {shown}")
    note = machine.get("note") or data.get("note")
    if note:
        parts.append(str(note).rstrip("."))
    return "Machine: " + "; ".join(parts) + "." if parts else "Machine: not recorded."


def sim_speed(data: dict[str, Any]) -> list[str]:
    measured = data.get("measured", {})
    ref = data.get("reference", {})
    rows = [
        [
            f"whole {_dig(data, 'workload', 'model')} ({_num(_dig(data, 'workload', 'gemms'))} GEMMs)",
            _num(ref.get("scalesim_wall_s"), 1),
            _num(measured.get("warm_median_s"), 5),
            _num(measured.get("speedup_vs_scalesim"), 0) + "×",
        ],
        [
            "one qkv layer",
            _num(ref.get("scalesim_qkv_wall_s"), 1),
            _num(measured.get("qkv_layer_median_s"), 6),
            _num(measured.get("qkv_speedup_vs_scalesim"), 0) + "×",
        ],
    ]
    lines = [
        f"Target: {data.get('target', MISSING)}. SCALE-Sim times: {ref.get('source', MISSING)}.",
        "",
        *_table(["simulated", "SCALE-Sim wall (s)", "mixbit warm median (s)", "speed-up"], rows),
        "",
        f"mixbit first call (JIT compile or cache load) {_num(measured.get('first_call_s'), 2)} s; "
        f"{_num(measured.get('runs'))} warm runs; simulated {_num(measured.get('cycles'))} cycles "
        f"({_num(measured.get('stall_cycles'))} stall).",
    ]
    goals = data.get("goals_met")
    if isinstance(goals, dict):
        lines.append("Goals: " + "; ".join(f"`{k}` {'met' if v else 'NOT met'}" for k, v in goals.items()) + ".")
    return lines


def scalesim_compare(data: dict[str, Any]) -> list[str]:
    rows = []
    for run in data.get("runs", []):
        layers = run.get("layers", [])
        if "total_ratio" in run:
            agreement = (
                f"total cycles ours/SCALE-Sim {_num(run.get('total_ratio'), 3)} "
                f"(per layer {_num(run.get('ratio_min'), 3)}–{_num(run.get('ratio_max'), 3)})"
            )
            reads = [
                (
                    layer["scalesim_dram_reads_bytes"] / layer["operand_bytes_once"],
                    layer["ours_dram_reads_bytes"] / layer["operand_bytes_once"],
                )
                for layer in layers
                if layer.get("operand_bytes_once")
                and "scalesim_dram_reads_bytes" in layer
                and "ours_dram_reads_bytes" in layer
            ]
            if reads:
                theirs = [r[0] for r in reads]
                ours = [r[1] for r in reads]
                agreement += (
                    f"; off-chip bytes read per layer ÷ operand bytes: SCALE-Sim {min(theirs):.1f}–{max(theirs):.1f}, "
                    f"mixbit {min(ours):.1f}–{max(ours):.1f}"
                )
        else:
            agreement = f"compute cycles equal on {_num(run.get('layers_equal'))}/{len(layers)} layers"
        rows.append(
            [
                str(run.get("run", MISSING)),
                agreement,
                _num(run.get("scalesim_wall_s"), 1),
                _num(run.get("ours_wall_s"), 5),
            ]
        )
    return [
        f"{data.get('scalesim', 'SCALE-Sim')}; {data.get('layers_note', '')}.",
        "",
        *_table(["run", "agreement", "SCALE-Sim wall (s)", "mixbit wall (s)"], rows),
    ]


def sweep(data: dict[str, Any]) -> list[str]:
    if "simulation" not in data:  # the 1,000-point bench of issue 9
        cli = data.get("cli", {})
        resume = data.get("kill_and_resume", {})
        row = [
            f"`{data.get('sweep_file', MISSING)}`", _num(cli.get("points")), _num(cli.get("workers")),
            _num(cli.get("process_wall_s"), 1), _num(cli.get("workload_s"), 1),
            _num(_dig(data, "rerun_all_stored", "process_wall_s"), 1),
            f"{_num(resume.get('duplicates'))} / {_num(resume.get('lost'))}", _num(data.get("goal_s"), 0),
        ]  # fmt: skip
        header = ["sweep file", "points", "workers", "CLI process wall (s)", "of it workload build (s)",
                  "rerun, all stored (s)", "kill + resume: duplicates / lost", "goal (s)"]  # fmt: skip
        return _table(header, [row])
    sim = data.get("simulation", {})
    rows = []
    for key, label in (("sweep_100k_baseline", "commit {commit} (before batching)"), ("sweep_100k", "this code"),
                       ("sweep_1m", "this code")):  # fmt: skip
        run = sim.get(key, {})
        rows.append(
            [
                f"`{run.get('sweep_file', MISSING)}`",
                label.format(commit=run.get("commit", MISSING)),
                _num(run.get("points")),
                _num(run.get("workers")),
                _num(run.get("process_wall_s"), 1),
                _num(run.get("points_per_s"), 0),
                _num(run.get("peak_rss_mb"), 0),
                _num(run.get("workload_s"), 1),
            ]
        )
    header = ["sweep file", "code", "points", "workers", "CLI wall (s)", "points/s", "peak RSS, all processes (MB)",
              "of it workload build (s)"]  # fmt: skip
    lines = _table(header, rows)
    resume = data.get("kill_and_resume", {})
    if resume:
        lines += ["", "Kill -9 of the whole process group once parts had landed, then a rerun:", ""]
        lines += _table(
            ["size", "stored when killed", "rerun evaluated", "rows", "duplicates", "lost"],
            [
                [size, _num(r.get("stored_when_killed")), _num(r.get("rerun_done")), _num(r.get("rows")),
                 _num(r.get("duplicates")), _num(r.get("lost"))]
                for size, r in resume.items()
            ],
        )  # fmt: skip
    codesign = data.get("codesign", {})
    if codesign:
        check = codesign.get("dp_vs_cold_ilp", {})
        lines += [
            "",
            f"Co-design `{codesign.get('sweep_file', MISSING)}`: {_num(codesign.get('points'))} points "
            f"(minimum-Ω plan per latency budget, exact DP front per design) in "
            f"{_num(codesign.get('process_wall_s'), 1)} s wall, peak {_num(codesign.get('peak_rss_mb'), 0)} MB. "
            f"Against a cold ILP ({check.get('cold_ilp', MISSING)}) on {_num(check.get('checked'))} of "
            f"{_num(check.get('points'))} random points: {_num(check.get('same_optimum'))} the same optimum, "
            f"{_num(check.get('different'))} different (worst relative difference "
            f"{_num(check.get('worst_relative_objective_difference'), 2)}); cold ILP median "
            f"{_num(check.get('cold_ilp_median_s'), 3)} s per point, "
            f"DP median {_num(check.get('dp_median_solve_s'), 5)} s.",
        ]
    scale = data.get("scale_out", {})
    if scale:
        runs = scale.get("runs", {})
        lines += [
            "",
            f"Scale-out (`dask scheduler` and `dask worker` processes started separately, 100,000 points): "
            f"1 worker {_num(_dig(runs, '1', 'process_wall_s'), 1)} s, 2 workers "
            f"{_num(_dig(runs, '2', 'process_wall_s'), 1)} s, speed-up {_num(scale.get('speedup_2_over_1'), 2)}×.",
        ]
    goals = data.get("goals")
    if isinstance(goals, dict):
        shown = {True: "met", False: "NOT met", None: "not run"}
        lines += ["", "Goals: " + "; ".join(f"`{k}` {shown.get(v, v)}" for k, v in goals.items()) + "."]
    return lines


def sensitivity(data: dict[str, Any]) -> list[str]:
    speed = data.get("speed", {})
    deit = data.get("deit", {})
    speed_rows = [
        [
            str(speed.get("model", MISSING)),
            _num(speed.get("layers")),
            f"{_num(speed.get('one_pass_seconds'), 1)} ({_num(speed.get('one_pass_draws'))} draws)",
            f"{_num(speed.get('loop_seconds'), 1)} ({_num(speed.get('loop_draws_total'))} draws)",
            _num(speed.get("speedup"), 1) + "×",
        ]
    ]
    lines = [
        "Speed: one Hutchinson pass for all layers against a PyHessian-style loop, one layer at a time.",
        "",
        *_table(["model", "layers", "one pass (s)", "per-layer loop (s)", "speed-up"], speed_rows),
    ]
    if deit:
        lines += [
            "",
            f"{deit.get('model', 'DeiT-S')}: {_num(deit.get('layers'))} layers, {_num(deit.get('draws'))} draws in "
            f"{_num(deit.get('seconds'), 1)} s ({_num(deit.get('seconds_per_draw'), 2)} s per draw, "
            f"{deit.get('device', MISSING)}).",
        ]
        quadratic = deit.get("quadratic_form")
        if isinstance(quadratic, dict):
            lines[-1] += (
                f" Quadratic form with random signs: {_num(quadratic.get('products'))} products "
                f"({_num(quadratic.get('draws_per_bit_width'))} per bit width) in {_num(quadratic.get('seconds'), 1)} s"
                f" (exact: {_num(quadratic.get('exact_would_take_products'))} products)."
            )
    quality = data.get("quality", {})
    methods = [k for k, v in quality.items() if isinstance(v, dict) and "spearman_pooled" in v]
    if methods:
        settings = [k for k in quality[methods[0]] if k != "spearman_pooled"]
        rows = [
            [f"`{m}`", _num(quality[m].get("spearman_pooled"), 3), *(_num(quality[m].get(s), 3) for s in settings)]
            for m in methods
        ]
        lines += [
            "",
            f"Quality: Spearman rank correlation of predicted against measured single-layer loss increase on "
            f"{quality.get('model', MISSING)} ({_num(quality.get('layers'))} layers).",
            "",
            *_table(["method", "pooled", *settings], rows),
        ]
    lines += _sensitivity_memory(data.get("memory", {})) + _sensitivity_defaults(data.get("defaults", {}))
    lines += _sensitivity_pyhessian({**data.get("pyhessian", {}), "_curvature": data.get("curvature", {})})
    return lines


def _sensitivity_memory(memory: dict[str, Any]) -> list[str]:
    runs = memory.get("runs", [])
    if not runs:
        return []
    rows = [
        [
            str(r.get("model", MISSING)),
            _num(r.get("images")),
            _num(r.get("bit_pairs")),
            _num(r.get("draws")),
            _num(r.get("peak_rss_mb")),
            _num(r.get("seconds"), 0),
            str((r.get("estimator") or {}).get("estimator", MISSING)),
        ]
        for r in runs
    ]
    return [
        "",
        "Memory of the pipeline's sensitivity stage (`score_options`, child processes, 1 torch thread): peak resident"
        " memory as bit pairs and random-sign draws grow. Before: "
        + str(memory.get("before", MISSING))
        + ". "
        + str(memory.get("reduced", ""))
        + " Load average at the end: "
        + ", ".join(_num(v, 1) for v in memory.get("load_average_at_end", []))
        + " (seconds are not comparable).",
        "",
        *_table(["model", "images", "bit pairs", "draws", "peak RSS (MB)", "seconds", "estimator"], rows),
    ]


def _sensitivity_defaults(defaults: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"`{name}`",
            _num(row.get("products")),
            _num(row.get("spearman_pooled_mean"), 3),
            _num(row.get("spearman_pooled_min"), 3),
            _num(row.get("mean_minus_exact"), 3),
            _num(row.get("seconds_mean"), 1),
        ]
        for name, row in defaults.items()
        if isinstance(row, dict) and "spearman_pooled_mean" in row
    ]
    if not rows:
        return []
    return [
        "",
        f"Quadratic-form estimators on {defaults.get('model', MISSING)}: Spearman against measured damage (mean and"
        " worst over seeds) and products; the size-chosen default is exact on this model.",
        "",
        *_table(["estimator", "products", "Spearman (mean)", "(worst seed)", "mean − exact", "seconds"], rows),
    ]


def _equal_error_tight(equal: dict[str, Any]) -> str:
    if not equal:
        return ""
    over = equal.get("mixbit_reference_resolved_layers_over_5_percent", [])
    return (
        f" At 1.5 % ({equal.get('target', MISSING)}) mixbit ran {_num(equal.get('mixbit_krylov_seconds'), 0)} s"
        f" against the loop's projected {_num(equal.get('pyhessian_loop_projected_seconds'), 0)} s"
        f" ({_num(equal.get('speedup'), 1)}x), with {_num(equal.get('mixbit_layers_within_5_percent_of_reference'))}"
        f" layers within 5 % of the reference and {_num(len(over))} of the layers the reference resolves outside it."
    )


def _sensitivity_pyhessian(compare: dict[str, Any]) -> list[str]:
    if not compare:
        return []
    rows = []
    for name in ("pyhessian_loop", "mixbit_per_layer_equal_time", "mixbit_deflated_equal_time",
                 "mixbit_krylov_equal_time", "mixbit_krylov_rel_se_2.5_percent",
                 "mixbit_krylov_rel_se_1.5_percent"):  # fmt: skip
        row = compare.get(name)
        if isinstance(row, dict):
            error = row.get("relative_error_vs_reference", {})
            se = row.get("relative_standard_error", {})
            rows.append(
                [
                    f"`{name}`",
                    _num(row.get("draws_run", row.get("draws_per_layer"))),
                    _num(row.get("seconds"), 0),
                    _num(se.get("median"), 3),
                    _num(se.get("max"), 3),
                    _num(error.get("median"), 3),
                    _num(error.get("within_5_percent")),
                    _num(error.get("within_5_percent_on_reference_resolved_layers")),
                    _num(error.get("within_2_combined_se")),
                    _num(row.get("layers_with_se_at_most_the_loops")),
                ]
            )
    reference = compare.get("reference", {})
    equal = compare.get("equal_error", {})
    projected = _num(equal.get("pyhessian_loop_projected_seconds"), 0)
    at_cost = equal.get("projected_at_equal_cost_per_product", {})
    stopped_s = _num(equal.get("mixbit_krylov_seconds"), 0)
    return [
        "",
        f"Per-layer weight traces against pyhessian {compare.get('pyhessian_version', MISSING)}'s per-layer loop on"
        f" {compare.get('model')} ({_num(compare.get('layers'))} layers); reference: pyhessian with"
        f" {_num(reference.get('draws_per_layer'))} draws per layer (its own relative standard error: median"
        f" {_num(reference.get('relative_se_median'), 3)}, max {_num(reference.get('relative_se_max'), 3)}; it"
        f" resolves {_num(reference.get('layers_resolved_to_5_percent'))} layers to 5 %, its 2-SE band inside ±5 %)."
        " Standard errors are each estimate's own; errors are against the reference (so they include its noise);"
        " \"within 2 SE\" counts layers within 2 combined standard errors (estimate's and reference's) of it;"
        " \"SE ≤ loop's\" counts layers whose standard error is at most the loop's at equal time. Equal"
        f" error ({equal.get('target', MISSING)}): mixbit's Krylov stopping rule ran {stopped_s}"
        f" s and left {_num(len(equal.get('mixbit_layers_over_target', [])))} layers above the target; the loop,"
        f" projected from the reference's per-draw spread at its measured seconds per draw, needs {projected} s"
        f" ({_num(equal.get('speedup'), 1)}x; at the loop's cost per product mixbit would need"
        f" {_num(at_cost.get('mixbit_seconds'), 0)} s, {_num(at_cost.get('speedup'), 1)}x; the issue's goal is 10x)."
        + _equal_error_tight(compare.get("equal_error_1.5_percent", {})),
        "",
        *_table(
            [
                "estimator",
                "draws",
                "seconds",
                "rel. SE (median)",
                "rel. SE (max)",
                "error (median)",
                "within 5 %",
                "within 5 % (resolved layers)",
                "within 2 SE",
                "SE ≤ loop's",
            ],
            rows,
        ),
        *_sensitivity_curvature(compare.get("_curvature", {})),
    ]


def _sensitivity_curvature(curvature: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"`{name}`",
            _num(row.get("spearman_pooled"), 3),
            _num(row.get("negative_estimates")),
            _num(row.get("seconds"), 0),
        ]
        for name, row in curvature.items()
        if isinstance(row, dict) and "spearman_pooled" in row
    ]
    if not rows:
        return []
    return [
        "",
        f"Negative curvature on {curvature.get('model', MISSING)}: the exact quadratic form with the loss Hessian"
        " (negative estimates counted by magnitude) against the Gauss-Newton form (PSD), Spearman against measured"
        " single-layer damage.",
        "",
        *_table(["curvature", "Spearman (pooled)", "negative estimates", "seconds"], rows),
    ]


def quant_accuracy(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"W{u.get('wbits')}A{u.get('abits')}",
            _pct(u.get("accuracy_mean")),
            _num(u.get("drop_points"), 2),
            _num(u.get("goal_max_drop_points"), 1) if "goal_max_drop_points" in u else MISSING,
            _num(u.get("meets_goal")) if "meets_goal" in u else MISSING,
        ]
        for u in data.get("uniform", [])
    ]
    lines = [
        f"{data.get('model', MISSING)}: fp32 {_pct(data.get('fp32_accuracy'))} on {_num(data.get('test_images'))} "
        f"test images; {_num(data.get('calibration_images'))} calibration images ({data.get('calibration_method')}), "
        f"mean of seeds {data.get('seeds')}.",
        "",
        *_table(["uniform plan", "accuracy", "drop (points)", "goal: max drop", "meets goal"], rows),
    ]
    auto = data.get("auto_vs_uniform", [])
    if auto:
        rows = [
            [
                f"W{a.get('wbits')}A{a.get('abits')}",
                _pct(a.get("uniform_mean")),
                _pct(a.get("auto_mean")),
                _num(a.get("auto_minus_uniform_points"), 2),
            ]
            for a in auto
        ]
        lines += [
            "",
            "Activation quantizer kind chosen per layer (`auto`) against all-uniform:",
            "",
            *_table(["bits", "uniform", "auto", "auto − uniform (points)"], rows),
        ]
    return lines


def integer_speed(data: dict[str, Any]) -> list[str]:
    rows = []
    for name, result in data.get("results", {}).items():
        rows.append(
            [
                f"`{name}`",
                _pct(_dig(result, "accuracy_test_split", "fake_quant_float32")),
                _pct(_dig(result, "accuracy_test_split", "integer")),
                f"{_num(result.get('mismatches'))} of {_num(result.get('checked'))}",
                _num(_dig(result, "images_per_s", "integer"), 1),
                _num(_dig(result, "images_per_s", "fake_quant_float32"), 1),
            ]
        )
    header = ["plan", "fake-quant acc.", "integer-only acc.", "mismatches", "integer img/s", "fake-quant img/s"]
    return [
        f"{data.get('model', MISSING)} ({data.get('weights', MISSING)}), fp32 {_pct(data.get('fp32_accuracy'))}; "
        f"bit-exactness on {_num(data.get('verify_images'))} images.",
        "",
        *_table(header, rows),
    ]


def allocator(data: dict[str, Any]) -> list[str]:
    ilp = data.get("ilp", {})
    pareto = ilp.get("pareto", {})
    rows = [
        [
            f"{_num(s.get('latency_ms_limit'), 2)} ms"
            + (f", {_num(s.get('size_mb_limit'), 1)} MB" if s.get("size_mb_limit") is not None else "")
            + (f", {_num(s.get('bops_g_limit'), 0)} GBOPs" if s.get("bops_g_limit") is not None else "")
            + (f", {s.get('ties')} tie constraints" if s.get("ties") else ""),
            ", ".join(s.get("status", [])),
            _num(s.get("median_s"), 3),
            _num(s.get("max_s"), 3),
        ]
        for s in ilp.get("solves", [])
    ]
    return [
        f"{ilp.get('model', MISSING)} on {ilp.get('target', MISSING)}: {_num(ilp.get('layers'))} layers × "
        f"{_num(ilp.get('bit_pairs'))} bit pairs = {_num(ilp.get('options'))} options; sensitivity: "
        f"{ilp.get('sensitivity', MISSING)}. Cost additivity: max relative error "
        f"{_num(_dig(ilp, 'additivity', 'max_relative_error'), 4)} over "
        f"{_num(_dig(ilp, 'additivity', 'plans'))} plans.",
        "",
        *_table(["budget", "status", "median solve (s)", "max solve (s)"], rows),
        "",
        f"Pareto front: {_num(pareto.get('points'))} points in {_num(pareto.get('seconds'), 1)} s "
        f"(goal {_num(pareto.get('goal_s'), 0)} s), all optimal: {_num(pareto.get('all_optimal'))}.",
    ]


def allocator_accuracy(data: dict[str, Any]) -> list[str]:
    acc = data.get("accuracy")
    if not isinstance(acc, dict):
        return ["_No accuracy part in `bench/results/allocator.json` yet._"]
    rows = [
        [
            str(b.get("budget", MISSING)),
            _pct(_dig(b, "uniform", "accuracy_mean")),
            _pct(_dig(b, "ilp", "accuracy_mean")),
            _pct(_dig(b, "ilp_trace_form", "accuracy_mean")),
            _pct(_dig(b, "random", "median_accuracy")),
            f"{_num(_dig(b, 'uniform', 'test_loss_mean'), 4)} / {_num(_dig(b, 'ilp', 'test_loss_mean'), 4)}",
            ", ".join(f"{name} {_num(v.get('mismatches'))}" for name, v in (b.get("verify") or {}).items()) or MISSING,
        ]
        for b in acc.get("budgets", [])
    ]
    header = ["latency budget", "uniform", "ILP plan", "ILP, trace-form Ω", "random plans (median)",
              "test loss uniform / ILP", "bit-exact mismatches"]  # fmt: skip
    return [
        f"{acc.get('model', MISSING)} on {acc.get('target', MISSING)}, fp32 {_pct(acc.get('fp32_accuracy'))} "
        f"(test loss {_num(acc.get('fp32_test_loss'), 4)}); scores: {acc.get('sensitivity', MISSING)}; mean over "
        f"calibration seeds {acc.get('calibration_seeds')}.",
        "",
        *_table(header, rows),
    ]


def patchwise(data: dict[str, Any]) -> list[str]:
    rows = []
    for b in data.get("budgets", []):
        base = b.get("layerwise", {})
        rows.append([str(b.get("budget", MISSING)), "-", "layer-wise", _pct(base.get("accuracy_mean")), "1",
                     _num(base.get("simulated_latency_ms"), 5), "1", "0", MISSING])  # fmt: skip
        for key, plans in b.items():
            if not key.startswith("fraction_"):
                continue
            for name, r in plans.items():
                rows.append(
                    [
                        "", key.removeprefix("fraction_"), name.replace("_", ", "), _pct(r.get("accuracy_mean")),
                        _num(r.get("accuracy_ratio"), 4), _num(r.get("simulated_latency_ms"), 5),
                        _num(r.get("latency_ratio"), 4), _num(r.get("split_layers")),
                        _num(_dig(r, "verify", "mismatches")),
                    ]
                )  # fmt: skip
    header = ["latency budget", "token fraction", "plan", "accuracy", "× layer-wise", "latency ms", "× layer-wise",
              "split GEMMs", "bit-exact mismatches"]  # fmt: skip
    others = "; ".join(
        f"{name} ({o.get('array_rows')} array rows, token sort {_dig(o, 'patchwise', 'token_sort')}): "
        + ", ".join(f"f = {f}: {n}" for f, n in (o.get("split_layers_chosen_at_W4A4_latency") or {}).items())
        for name, o in (data.get("other_targets") or {}).items()
    )
    return [
        f"{data.get('model', MISSING)} ({data.get('tokens', MISSING)} tokens) on {data.get('target', MISSING)}, "
        f"fp32 {_pct(data.get('fp32_accuracy'))}; Ω: {data.get('sensitivity', MISSING)}; token score "
        f"{data.get('token_score', MISSING)}; accuracy: mean over calibration seeds {data.get('calibration_seeds')} "
        "on the test images; latency: `sim.simulate` of each plan. `mixed` = ILP with patch-wise options added "
        "(Ω from the norm or the class-token attention shares), `patchwise` = every Linear GEMM forced to a token "
        "split (tokens by L1 norm), `cls, attn` = the same bits with tokens by class-token attention, `random` = the "
        "same bits with random token groups.",
        "",
        *_table(header, rows),
        "",
        f"Split GEMMs the ILP picks at the W4A4 latency on other targets: {others or MISSING}.",
    ]


def _millions(count: Any) -> str:
    return MISSING if count is None else _num(count / 1e6, 1)


def pipeline_scale(data: dict[str, Any]) -> list[str]:
    models = data.get("models", {})
    stage_names: list[str] = []
    for record in models.values():
        for stage in record.get("stages") or []:
            if stage.get("name") not in stage_names:
                stage_names.append(stage["name"])

    def stage_cell(record: dict[str, Any], name: str) -> str:
        stage = next((s for s in record.get("stages") or [] if s.get("name") == name), None)
        if stage is None:
            return MISSING
        return f"{_num(stage.get('seconds'), 0)} s / {_num(stage.get('peak_rss_mb'), 0)}"

    def goals(record: dict[str, Any]) -> str:
        met = _dig(record, "goals", "met")
        if not isinstance(met, dict) or not met:
            return MISSING
        limits = record["goals"]
        parts = []
        if "peak_rss_mb" in met:
            parts.append(f"≤ {_num(limits['peak_rss_mb'] / 1024, 0)} GiB: {'met' if met['peak_rss_mb'] else 'missed'}")
        if "seconds" in met:
            parts.append(f"≤ {_num(limits['seconds'] / 60, 0)} min: {'met' if met['seconds'] else 'missed'}")
        return "; ".join(parts)

    def verify(record: dict[str, Any]) -> str:
        if not record.get("verify_run"):
            return "not run (see JSON)"
        v = record.get("verify") or {}
        return f"{_num(v.get('mismatches'))} of {_num(v.get('checked'))} ({_num(v.get('images'))} img)"

    def row(model: str, record: dict[str, Any]) -> list[str]:
        return [
            f"{model} ({_millions(_dig(record, 'settings', 'model_parameters'))} M)",
            f"exit {record.get('exit_status')}",
            *[stage_cell(record, name) for name in stage_names],
            _num(record.get("wall_seconds"), 0),
            _num(record.get("subprocess_max_rss_mb"), 0),
            verify(record),
            goals(record),
            f"{_num(_dig(record, 'load_average_before', 0), 1)} → {_num(_dig(record, 'load_average_after', 0), 1)}",
        ]

    rows = [row(model, record) for model, record in models.items()]
    earlier = data.get("earlier_runs") or {}
    earlier_rows = [row(model, record) for model, record in earlier.items() if "stages" in record]
    header = ["model", "status", *[f"{n} (s / MiB)" for n in stage_names], "wall (s)", "max RSS (MiB)",
              "verify mismatches", "goals", "load (1 min)"]  # fmt: skip
    settings = sorted(
        {
            ", ".join(
                f"{k} {_dig(r, 'settings', k)}"
                for k in ("sensitivity_images", "quadratic_draws", "calib_images", "verify_images")
            )
            for r in models.values()
            if r.get("settings")
        }
    )
    skipped = [f"{m}: {r['verify_skipped']}" for m, r in models.items() if r.get("verify_skipped")]
    stopped = [
        f"{m} was stopped after {r.get('started_utc')}–{r.get('stopped_utc')} UTC in the {r.get('stopped_in')}; its "
        f"resident memory reached {_num(r.get('max_rss_mb_until_stopped'), 0)} MiB by then ({r.get('source')})."
        for m, r in {**(data.get("stopped_runs") or {}), **earlier}.items()
        if "stopped_in" in r
    ]
    return [
        f"`mixbit allocate --target {data.get('target', MISSING)} --latency-of {data.get('latency_of', MISSING)}` "
        "with default settings, each model in its own process, random weights, on a generated ImageNet-layout "
        f"folder ({_dig(data, 'data', 'classes')} classes × {_dig(data, 'data', 'per_class_each_side')} RGB PNGs in "
        "train/ and in val/). Per stage: wall seconds / the process's resident-memory high-water mark at the "
        "stage's end (MiB); max RSS from `os.wait4` of the subprocess; load: the 1-minute load average before → "
        "after the model's run.",
        "",
        *_table(header, rows),
        "",
        "Counts the model's size chose: " + ("; ".join(settings) or MISSING) + ".",
        *([""] + [f"Verify not run for {line}" for line in skipped] if skipped else []),
        *(
            [
                "",
                "Earlier run of the same bench (code and load in the JSON's `earlier_runs`):",
                "",
                *_table(header, earlier_rows),
            ]
            if earlier_rows
            else []
        ),
        *([""] + [f"Not finished: {line}" for line in stopped] if stopped else []),
    ]


METHOD_LABELS = {
    "hessian_quadratic": "Hessian ΔᵀHΔ (default)",
    "fisher_raw": "Fisher, raw",
    "fisher_per_operand_type_mean": "Fisher, each operand ÷ its type mean (`--sensitivity fisher`)",
    "fisher_type_lampq": "LampQ type-aware Fisher (`fisher-type`)",
    "pmq": "PMQ metric, HTQ's form (`pmq`)",
    "pmq_reinit_htq": "PMQ metric on re-initialised weights, as HTQ's code",
}


def methods(data: dict[str, Any]) -> list[str]:
    """bench/methods.py: the seed papers' scorers ranked against measured damage, plans at equal latency, refine."""
    ranking = data.get("ranking", {})
    lines = [
        "Ranking: Spearman of each scorer's predicted against the measured single-layer loss increase on "
        f"{ranking.get('model', MISSING)} ({_num(ranking.get('layers'))} layers, scores on "
        f"{_num(ranking.get('images_scored'))} images; damage {ranking.get('damage_measured_on', MISSING)}); "
        "seconds: the scorer's wall time.",
        "",
    ]
    rows = []
    for key, label in METHOD_LABELS.items():
        row = ranking.get(key)
        if not isinstance(row, dict):
            continue
        per = row.get("per_setting", {})
        cells = [label, _num(row.get("spearman_pooled"), 3)]
        cells += [_num(per.get(s), 3) for s in ("weight2", "weight3", "act3", "act4")]
        rows.append([*cells, _num(row.get("seconds"), 1)])
    lines += _table(["scorer", "pooled", "weight2", "weight3", "act3", "act4", "seconds"], rows)
    variants = ranking.get("fisher_type_scale_variants", {})
    if variants:
        shown = "; ".join(f"{name} {_num(value, 3)}" for name, value in variants.items())
        lines += [
            "",
            "LampQ's α_t is not in what we could read of the paper; other readings of one scale per component type,"
            f" on the same raw Fisher traces (pooled Spearman): {shown}.",
        ]
    plans = data.get("plans", {})
    for budget, table in plans.items():
        if not budget.startswith("latency_of_") or not isinstance(table, dict):
            continue
        uniform = next((r for r in table.values() if isinstance(r, dict) and "uniform_accuracy" in r), {})
        lines += [
            "",
            f"Plans at the latency of uniform {budget.removeprefix('latency_of_')} ("
            f"{_num(uniform.get('latency_limit_ms'), 5)} ms on zcu102; uniform: accuracy "
            f"{_pct(uniform.get('uniform_accuracy'))}, test loss {_num(uniform.get('uniform_test_loss'), 4)}), "
            f"`run_pipeline` with default settings; {plans.get('fp32_note', 'accuracy on the test split')}:",
            "",
        ]
        plan_rows = []
        for row in table.values():
            if not isinstance(row, dict) or "accuracy" not in row:
                continue
            plan_rows.append(
                [
                    f"`{row['sensitivity']}` + {row['solver']}",
                    _pct(row.get("accuracy")),
                    _num(row.get("test_loss"), 4),
                    _num(row.get("latency_ms"), 5),
                    _num(row.get("score_seconds"), 1),
                    _num(row.get("solve_seconds"), 3),
                ]
            )
        lines += _table(["scores + solver", "accuracy", "test loss", "latency (ms)", "score (s)", "solve (s)"],
                        plan_rows)  # fmt: skip
        versus = table.get("pmq_pareto_vs_ilp", {})
        if versus:
            lines += [
                "",
                f"PMQ's Pareto search against the ILP on the same PMQ scores: same plan "
                f"{_num(versus.get('same_plan'))}, Ω ratio {_num(versus.get('objective_ratio'), 6)}.",
            ]
    for row in data.get("refine", {}).values():
        if not isinstance(row, dict) or "rounds" not in row:
            continue
        lines += [
            "",
            f"LampQ's iterative update, `--sensitivity {row['sensitivity']} --refine 3` at "
            f"{_num(row.get('latency_limit_ms'), 5)} ms (Ω of each round under that round's scores):",
            "",
        ]
        lines += _table(
            ["round", "Ω", "latency (ms)", "accuracy", "test loss", "layers changed", "seconds"],
            [
                [
                    str(r["round"]),
                    _num(r.get("objective"), 4),
                    _num(r.get("latency_ms"), 5),
                    _pct(r.get("accuracy")),
                    _num(r.get("test_loss"), 4),
                    _num(r.get("changed_layers")),
                    _num(r.get("seconds"), 1),
                ]
                for r in row["rounds"]
            ],
        )
    scale = data.get("pareto_scale", {})
    points = [(k, v) for k, v in scale.items() if k.startswith("latency_") and isinstance(v, dict)]
    if points:
        lines += ["", f"PMQ's Pareto search against the ILP at scale: {scale.get('problem', MISSING)}, random Ω.", ""]
        lines += _table(
            ["latency limit (ms)", "ILP (s)", "Pareto (s)", "same Ω"],
            [
                [
                    _num(v.get("latency_limit_ms"), 3),
                    _num(_dig(v, "ilp", "seconds"), 2),
                    _num(_dig(v, "pmq-pareto", "seconds"), 2),
                    _num(v.get("same_objective")),
                ]
                for _, v in points
            ],
        )
    loads = [
        f"{part} {', '.join(f'{float(v):.1f}' for v in data[part]['load_average_at_end'][:3])}"
        for part in ("ranking", "plans", "refine", "pareto_scale")
        if isinstance(data.get(part), dict) and data[part].get("load_average_at_end")
    ]
    if loads:
        lines += ["", "Load average at the end of each part: " + "; ".join(loads) + "."]
    return lines


def swin_integer(data: dict[str, Any]) -> list[str]:
    rows = []
    for name, result in data.get("results", {}).items():
        rows.append(
            [
                f"`{name}`",
                _num(result.get("points")),
                f"{_num(result.get('mismatches'))} of {_num(result.get('checked'))}",
                _num(result.get("verify_seconds"), 1),
                _num(result.get("peak_rss_mb_so_far"), 0),
            ]
        )
    header = ["plan", "quantization points", "mismatches", "verify s", "peak RSS MiB"]
    return [
        f"{data.get('model', MISSING)} ({data.get('weights', MISSING)}) at "
        f"{'×'.join(str(v) for v in data.get('image_size', []))}: the integer-only Swin against the fake-quant "
        f"model's exact mode, every quantization point element by element, on {_num(data.get('verify_images'))} "
        f"images (calibrated on {_num(data.get('calibration_images'))}).",
        "",
        *_table(header, rows),
    ]


def swin_pipeline(data: dict[str, Any]) -> list[str]:
    verify = data.get("verify") or {}
    detection = data.get("detection") or {}
    stages = ", ".join(f"{s.get('name')} {_num(s.get('seconds'), 0)} s" for s in data.get("stages") or [])
    return [
        f"`{' '.join(data.get('command', [])[:6])} ...` (settings in the JSON): exit {_num(data.get('exit_code'))}, "
        f"status {data.get('status', MISSING)}, {_num(data.get('layers'))} layers planned, predicted "
        f"{_num(_dig(data, 'predicted', 'latency_ms'))} ms including the FPN neck's "
        f"{_num(detection.get('neck_cycles'))} cycles at W{_dig(detection, 'neck_bits', 'wbits')}"
        f"A{_dig(detection, 'neck_bits', 'abits')}; integer-only check {_num(verify.get('mismatches'))} mismatches "
        f"of {_num(verify.get('checked'))} elements; {_num(data.get('wall_seconds'), 0)} s wall "
        f"({stages}), max RSS {_num(data.get('subprocess_max_rss_mb'), 0)} MiB.",
    ]


def detection(data: dict[str, Any]) -> list[str]:
    stages = ("stage1", "stage2", "stage3", "stage4", "neck")
    rows = []
    for run in data.get("runs", []):
        per_stage = {s["stage"]: s for s in run.get("stages", [])}
        res = run.get("resources", {})
        rows.append(
            [
                f"`{run.get('model')}`",
                run.get("target", MISSING),
                f"W{run.get('wbits')}A{run.get('abits')}",
                *(
                    f"{_num(_dig(per_stage, s, 'cycles'))} ({_num(_dig(per_stage, s, 'latency_ms'), 1)} ms)"
                    for s in stages
                ),
                f"{_num(run.get('cycles'))} ({_num(run.get('latency_ms'), 1)} ms)",
                " / ".join(_num(res.get(key)) for key in ("dsp", "lut", "bram36", "uram")),
                _num(run.get("fits")),
            ]
        )
    header = ["backbone", "target", "bits", *stages, "total", "DSP / LUT / BRAM36 / URAM", "fits"]
    note = str(data.get("note", ""))
    size = "×".join(str(v) for v in data.get("img_size", []))
    padded = "×".join(str(v) for v in data.get("padded_size", []))
    return [
        f"Backbone + FPN neck ({_num(data.get('fpn_channels'))} channels) at {size} padded to {padded}, "
        "cycles (and ms) per stage, simulated on each target's own array and memory; the resources are the one "
        "design's that runs every stage (`mixbit simulate --model NAME --detection --target T`). "
        f"{note[:1].upper() + note[1:]}.",
        "",
        *_table(header, rows),
    ]


SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[str]]], ...] = (
    ("sim_speed", "Simulator speed against SCALE-Sim", sim_speed),
    ("scalesim_compare", "Agreement with SCALE-Sim", scalesim_compare),
    ("sweep", "Design sweep on Dask", sweep),
    ("sensitivity", "Sensitivity: speed and quality", sensitivity),
    ("quant_accuracy", "Accuracy against uniform quantization", quant_accuracy),
    ("integer_speed", "Integer-only model: bit-exactness and accuracy per plan", integer_speed),
    ("allocator", "Bit allocation ILP", allocator),
    ("allocator", "Mixed precision against uniform at equal latency", allocator_accuracy),
    ("patchwise", "Patch-wise (token-split) against layer-wise bits at equal latency", patchwise),
    ("pipeline_scale", "Real models end to end: seconds and memory per stage", pipeline_scale),
    ("methods", "Seed methods: PMQ, LampQ's type-aware Fisher and iterative update", methods),
    ("swin_integer", "Integer-only Swin: bit-exactness on swin_tiny", swin_integer),
    ("swin_pipeline", "Swin-T end to end: allocate --verify --detection", swin_pipeline),
    ("detection", "Detection backbones at 800×1333 with an FPN neck, per stage", detection),
)


def render_block(results: Path = RESULTS, image: Path | None = IMAGE) -> str:
    """The Markdown between the markers: one section per benchmark, in SECTIONS order."""
    lines = [
        START,
        "<!-- generated by scripts/readme_results.py from bench/results/*.json; do not edit by hand -->",
        "",
    ]
    for name, title, render in SECTIONS:
        path = results / f"{name}.json"
        lines.append(f"### {title}")
        lines.append("")
        if not path.exists():
            lines += [f"_No `bench/results/{name}.json` yet: run `bench/{name}.py`._", ""]
            continue
        data = json.loads(path.read_text())
        lines += [*render(data), "", f"_Source: `bench/results/{name}.json`. {_machine(data)}_", ""]
    if image is not None and image.exists():
        rel = image.relative_to(ROOT).as_posix()
        lines += [
            "### Digits testbed: Pareto front of the allocator",
            "",
            f"![Pareto front of the digits testbed pipeline]({rel})",
            "",
            "_Regenerated by `scripts/readme_results.py` with `allocator.run_pipeline` (small settings: "
            "`mixbit_vit_digits` on zcu102, budget = uniform W4A8 latency, scores on 64 images; Hessian: the exact "
            "quadratic form). Left: Ω (Fisher), the summed sensitivity the ILP minimises, along the Pareto front "
            "and for the uniform plans; right: top-1 accuracy measured after quantizing and calibrating with each "
            "plan, for the plans chosen from Fisher and from Hessian scores. The image is rewritten on every run "
            "of the script; its numbers are not in any bench JSON._",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text from START to END replaced by ``block`` (markers appended if absent)."""
    if START not in readme or END not in readme:
        return readme.rstrip("\n") + "\n\n" + block + "\n"
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def write_plot(image: Path = IMAGE) -> None:
    """Run the digits pipeline with small settings and save its Pareto front (Ω against latency) to ``image``."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import torch
    from matplotlib import pyplot as plt

    torch.set_num_threads(2)
    from allocator.pipeline import plots
    from allocator.pipeline.run import run_pipeline

    small = {"latency_of": (4, 8), "calib_images": 128, "sensitivity_images": 64}
    result = run_pipeline(
        "mixbit_vit_digits",
        "zcu102",
        sensitivity="fisher",
        baselines=((8, 8), (6, 6), (4, 8), (4, 4)),
        pareto_points=10,
        **small,
    )
    hessian = run_pipeline("mixbit_vit_digits", "zcu102", sensitivity="hessian", baselines=(), pareto_points=0, **small)
    baselines = pd.DataFrame([b.to_json() for b in result.baselines]).rename(columns={"score": "objective"})
    chosen_ms = result.allocation.predicted.latency_ms
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    front = result.pareto.to_frame()
    chosen = {"latency_ms": chosen_ms, "objective": result.allocation.objective}
    plots.pareto_plot(front, ax=left, y="objective", higher_is_better=False, baselines=baselines, chosen=chosen)
    if (front["objective"].dropna() > 0).all() and (baselines["objective"] > 0).all():
        left.set_yscale("log")
    left.set_ylabel("Ω: summed sensitivity (lower is better)")
    left.set_title("ILP front (Fisher Ω) at latency budgets, uniform plans", fontsize=9)
    # measured, not predicted: top-1 of the quantized models on the held-out split
    right.scatter(baselines["latency_ms"], 100 * baselines["accuracy"], marker="s", s=36, color="C3", label="uniform")
    for _, row in baselines.iterrows():
        right.annotate(
            row["label"],
            (row["latency_ms"], 100 * row["accuracy"]),
            xytext=(4, 4),
            fontsize=8,
            textcoords="offset points",
        )
    if result.accuracy is not None:
        right.scatter([chosen_ms], [100 * result.accuracy], marker="*", s=160, color="C2", label="chosen (Fisher Ω)")
    if hessian.accuracy is not None:
        hessian_ms = hessian.allocation.predicted.latency_ms
        right.scatter([hessian_ms], [100 * hessian.accuracy], marker="*", s=160, color="C4", label="chosen (Hessian Ω)")
    if result.accuracy_fp32 is not None:
        right.axhline(100 * result.accuracy_fp32, color="0.5", ls="--", lw=1, label="fp32")
    right.set_xlabel("latency ms (predicted)")
    right.set_ylabel("top-1 accuracy (%), held-out digits")
    right.set_title("measured accuracy", fontsize=9)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(f"{result.model} on {result.target}: latency budget = uniform W4A8", fontsize=10)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=image.parent, suffix=".png", delete=False) as handle:
        temporary = Path(handle.name)
    fig.savefig(temporary, dpi=110)
    plt.close(fig)
    os.replace(temporary, image)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's block is stale; write nothing")
    parser.add_argument("--no-plot", action="store_true", help="keep the existing image (no pipeline run)")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    if args.check:
        fresh = replace_block(readme, render_block(args.results))
        if fresh != readme:
            print(f"{args.readme}: results block is stale; run scripts/readme_results.py", file=sys.stderr)
            return 1
        return 0
    if not args.no_plot:
        write_plot()
    updated = replace_block(readme, render_block(args.results))
    temporary = args.readme.with_suffix(".md.tmp")
    temporary.write_text(updated)
    os.replace(temporary, args.readme)
    print(f"wrote {args.readme}" + ("" if args.no_plot else f" and {IMAGE}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
