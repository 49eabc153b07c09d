"""The whole job: model and board in, per-layer bits, predicted cost, accuracy and a bit-exactness proof out.

workload (sim) → cost table per (layer, bits) (sim) → sensitivity Ω (Hessian or Fisher) → ILP → quantize and
calibrate with the chosen plan (quant) → accuracy on held-out data → integer-only model checked against the
fake-quant model (``verify``) → files under ``out``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

import sim
from allocator.bridge.workload import workload_from_model
from allocator.ilp.model import Allocation, Limits, ParetoFront, allocate, pareto_front
from allocator.ilp.problem import Problem, build_problem
from allocator.ilp.robust import Flip, unresolved_layers
from allocator.outputs import check_output_dir, replace_folder
from allocator.sensitivity.configs import FisherConfig, HessianQuadraticConfig, HessianTraceConfig, ScorerConfig
from allocator.sensitivity.scores import quantizable_layers, sensitivity_table
from allocator.serialize import json_default
from quant.calibrate import calibrate_
from quant.data import ModelData, as_model_data, evaluate_data
from quant.inputs import DataOptions, model_and_data
from quant.plan import BitPlan
from quant.quantize import QuantConfig, quantize_
from quant.testbed import Split
from sim.errors import InputError

__all__ = [
    "Baseline",
    "PipelineResult",
    "predicted_uniform",
    "quantized_accuracy",
    "run_pipeline",
    "score_options",
]

EXPORT_FILES = {"qonnx": "model.qonnx.onnx", "onnx-int": "model.int.onnx", "npz": "npz"}
"""Where ``allocate --export`` writes each format inside the output folder (npz: a folder)."""
DEFAULT_BASELINES: tuple[tuple[int, int], ...] = ((8, 8), (6, 6), (4, 8), (4, 4), (3, 4))
# standard errors a score may move (against the chosen option) before a layer counts as unresolved (≈ 95 %)
UNRESOLVED_Z = 2.0


@dataclass(frozen=True)
class Baseline:
    """A uniform plan (every GEMM at ``wbits``/``abits``) for comparison: predicted cost, Ω, accuracy and
    mean test cross-entropy."""

    wbits: int
    abits: int
    latency_ms: float
    size_mb: float
    bops: float
    score: float
    accuracy: float | None
    test_loss: float | None = None

    @property
    def label(self) -> str:
        return f"W{self.wbits}A{self.abits}"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


@dataclass(frozen=True)
class PipelineResult:
    """What ``run_pipeline`` found. ``accuracy`` is top-1 on the held-out split (None without labelled data);
    ``test_loss`` its mean cross-entropy, which still separates plans when accuracy is one image apart."""

    model: str
    target: str
    allocation: Allocation
    accuracy_fp32: float | None
    accuracy: float | None
    baselines: tuple[Baseline, ...]
    pareto: ParetoFront | None
    calibration: dict[str, str]
    verify: Any | None
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    test_loss_fp32: float | None = None
    test_loss: float | None = None
    # how the scores were estimated (``score_options``' frame.attrs["estimator"]), each option's standard error
    # {(layer, wbits, abits): se} and the layers whose bits flip within 2 standard errors (allocator.ilp.robust)
    sensitivity: dict[str, Any] = field(default_factory=dict)
    sensitivity_se: dict[tuple[str, int, int], float] = field(default_factory=dict, repr=False)
    unresolved: tuple[Flip, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, Any] = field(default_factory=dict)  # format -> quant.exports.ExportResult JSON

    def to_frame(self) -> pd.DataFrame:
        """The chosen option of every layer with its sensitivity and costs."""
        return self.allocation.to_frame()

    def to_json(self) -> dict[str, Any]:
        """The contract's ``allocate`` object plus model, target, accuracy, baselines, outputs and timings."""
        obj = self.allocation.to_json()
        obj.update(
            {
                "model": self.model,
                "target": self.target,
                "accuracy": {"fp32": self.accuracy_fp32, "quantized": self.accuracy},
                "test_loss": {"fp32": self.test_loss_fp32, "quantized": self.test_loss},
                "baselines": [b.to_json() for b in self.baselines],
                "act_kinds": self.calibration,
                "outputs": self.outputs,
                "seconds": self.seconds,
                "data": self.data,
            }
        )
        if self.exports:
            obj["exports"] = self.exports
        if self.verify is not None:
            obj["verify"] = self.verify.to_json()
        for row in obj.get("options", []):
            row["sensitivity_se"] = self.sensitivity_se.get((row["layer"], row["wbits"], row["abits"]), 0.0)
        obj["sensitivity"] = {
            **self.sensitivity,
            "unresolved_z": UNRESOLVED_Z,
            "unresolved": [flip.to_json() for flip in self.unresolved],
        }
        return obj


def predicted_uniform(problem: Problem, wbits: int, abits: int) -> dict[str, float] | None:
    """Latency (ms), size (MB), BOPs (G) and Ω of the uniform plan, or None if some layer lacks that pair."""
    frame = problem.to_frame()
    rows = frame[(frame["wbits"] == wbits) & (frame["abits"] == abits)]
    if rows["layer"].nunique() != len(problem.layers):
        return None
    cycles = float(rows["latency_cycles"].sum()) + problem.fixed_cycles
    return {
        "latency_ms": problem.cycles_to_ms(cycles),
        "size_mb": float(rows["size_bits"].sum()) / 8e6,
        "bops": float(rows["bops"].sum()) / 1e9,
        "score": float(rows["sensitivity"].sum()),
    }


def quantized_accuracy(
    model: nn.Module,
    plan: BitPlan,
    data: ModelData | Split,
    *,
    calib_images: int,
    act_kind: str = "uniform",
    calibration: str = "mse",
    seed: int = 0,
) -> tuple[nn.Module, float | None, dict[str, str]]:
    """Quantize a copy of ``model`` with ``plan``, calibrate it on training images (``calibration``: minmax,
    percentile or mse), and measure test accuracy (None without labelled evaluation data)."""
    data = as_model_data(data)
    torch.manual_seed(seed)
    qmodel = quantize_(copy.deepcopy(model), QuantConfig(plan=plan, act_kind=act_kind))
    calib, _ = data.calib_batch(calib_images, seed)
    report = calibrate_(qmodel, calib, method=calibration)
    accuracy, _ = evaluate_data(qmodel, data)
    return qmodel, accuracy, report.choices


def _plan_with_kind(plan: dict[str, Any], act_kind: str) -> BitPlan:
    layers = {name: {**bits, "act_kind": act_kind} for name, bits in plan["layers"].items()}
    return BitPlan.from_dict({**plan, "layers": layers}, where="allocated plan")


def score_options(
    net: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    bit_pairs: Sequence[tuple[int, int]],
    *,
    method: str = "hessian",
    form: str = "quadratic",
    act_method: str = "mse",
    act_kind: str = "uniform",
    max_draws: int = 50,
    quadratic_draws: int | None = None,
    estimator: str = "auto",
    batch_size: int | str | None = "auto",
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Ω for every GEMM and bit pair: columns layer, wbits, abits, sensitivity, sensitivity_se (its standard
    error; 0 where exact). ``frame.attrs["estimator"]`` says which estimator ran (the size-chosen one by default).

    Scores are taken on an 8-bit fake-quant copy: its QuantMatMul modules expose the attention matmul operands
    (q, kᵀ, softmax output, v) to the activation-trace hooks; at 8 bits it is close to the float model.
    ``form``: the Hessian score's form (``sensitivity.sensitivity_table``); ``max_draws``: Hutchinson draws of
    the trace form; ``estimator``: the quadratic form's (``auto``: exact for small models, random-sign products
    for big ones; ``exact``; ``random_sign``), ``quadratic_draws``: its random-sign products per bit width
    (given alone, it asks for random signs). ``batch_size``: images per autograd graph (``auto``: by the
    model's size), which bounds memory. ``act_method``: how activation quantizers are fitted for the errors —
    the calibration method the plan will be calibrated with; ``act_kind``: their kind, as the plan will quantize
    GEMM inputs (``auto`` chooses kinds only at calibration, so its errors are priced as uniform).
    """
    probe = quantize_(copy.deepcopy(net), QuantConfig(wbits=8, abits=8))
    calibrate_(probe, batch[0])
    kinds = None if act_kind in ("uniform", "auto") else dict.fromkeys(quantizable_layers(probe), act_kind)
    common: dict[str, Any] = {
        "act_method": act_method,
        "act_kinds": kinds,
        "batch_size": batch_size,
        "seed": seed,
        "progress": progress,
    }
    config: ScorerConfig
    if method == "fisher":
        config = FisherConfig(**common)
    elif form == "trace":
        config = HessianTraceConfig(max_draws=max_draws, **common)
    else:
        if quadratic_draws is not None and estimator == "auto":
            estimator = "random_sign"
        draws = {} if quadratic_draws is None else {"draws": quadratic_draws}
        config = HessianQuadraticConfig(estimator=estimator, **draws, **common)  # type: ignore[arg-type]
    scores = sensitivity_table(probe, F.cross_entropy, batch, bit_pairs, config=config)
    return scores[["layer", "wbits", "abits", "sensitivity", "sensitivity_se"]]


def run_pipeline(
    model: str | nn.Module,
    target: str | os.PathLike[str] | sim.Target,
    *,
    data: str | ModelData = "digits",
    model_name: str | None = None,
    limits: Limits | None = None,
    latency_of: tuple[int, int] | None = None,
    sensitivity: str = "hessian",
    hessian_form: str = "quadratic",
    act_kind: str = "uniform",
    verify: bool = False,
    out: str | os.PathLike[str] | None = None,
    calib_images: int = 256,
    sensitivity_images: int = 128,
    max_draws: int = 50,
    quadratic_draws: int | None = None,
    quadratic_estimator: str = "auto",
    verify_images: int = 200,
    baselines: Sequence[tuple[int, int]] = DEFAULT_BASELINES,
    pareto_points: int = 12,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    exports: Sequence[str] = (),
) -> PipelineResult:
    """Choose per-layer bits for ``model`` on ``target`` under ``limits`` and check the result end to end.

    ``latency_of=(w, a)`` sets the latency limit to the predicted latency of the uniform WwAa plan (a common
    question: "what is the best plan as fast as uniform W4A4?"). ``data``: ``digits``, an image folder, or
    ``ModelData`` already opened for ``model`` (``quant.inputs.model_and_data``: checkpoints, --calib-data,
    --eval-data, synthetic images); ``model_name`` names an ``nn.Module`` model in the results.
    ``sensitivity``: hessian or fisher; ``hessian_form``: quadratic (ΔᵀHΔ, exact) or trace (HAWQ-V2, Hutchinson
    with at most ``max_draws`` draws); the quadratic form's ``quadratic_estimator`` is ``auto`` (exact for small
    models, random-sign products for big ones; the JSON's ``sensitivity`` says which ran), ``exact`` or
    ``random_sign`` (``quadratic_draws`` products per bit width; given alone it asks for random signs), see
    ``allocator.sensitivity.HessianQuadraticConfig``.
    Raises ``InputError`` (CLI exit status 2) for bad input and for budgets no plan can meet; nothing is
    written to ``out`` unless the whole run succeeds.
    """
    say = log or (lambda _message: None)
    if sensitivity not in ("hessian", "fisher"):
        raise InputError(f"unknown sensitivity method {sensitivity!r}; choose hessian or fisher")
    if hessian_form not in ("quadratic", "trace"):
        raise InputError(f"unknown Hessian score form {hessian_form!r}; choose quadratic or trace")
    if max_draws < 1:
        raise InputError(f"max_draws must be at least 1, got {max_draws}")
    if quadratic_draws is not None and quadratic_draws < 1:
        raise InputError(f"quadratic_draws must be at least 1 (or None for the exact form), got {quadratic_draws}")
    if exports:
        from quant.exports import check_format

        for fmt in exports:
            check_format(fmt)
        if out is None:
            raise InputError("--export needs --out: the exports are written beside plan.json")
    if out is not None:  # an unusable --out fails now, not after the whole run
        check_output_dir(out, owned=OWNED_FILES)
    limits = limits or Limits()
    seconds: dict[str, float] = {}
    began = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal began
        now = time.perf_counter()
        seconds[name] = round(now - began, 3)
        began = now

    target = target if isinstance(target, sim.Target) else sim.load_target(target)
    if isinstance(data, ModelData):
        if not isinstance(model, nn.Module):
            raise TypeError("run_pipeline: with ModelData, pass the model it was opened for (an nn.Module)")
        net, model_data = model.eval(), data
    elif isinstance(model, nn.Module):
        net, model_data = model.eval(), as_model_data(_digits_or_folder(model, data, seed))
    else:
        # checkpoint and data checks come before any expensive stage (model_and_data orders them so)
        net, _, model_data = model_and_data(model, DataOptions(data=data, seed=seed))
    name = model_name or (model if isinstance(model, str) else type(model).__name__)
    lap("load")

    workload = workload_from_model(net)
    accel = target.accelerator
    bit_pairs = [(w, a) for w in accel.weight_bits for a in accel.act_bits]
    lap("workload")

    # Costs first, and the budget checked against them with Ω = 0: an impossible budget fails in seconds,
    # before the sensitivity pass.
    unscored = pd.DataFrame(
        [(g.name, w, a, 0.0) for g in workload.gemms for w, a in bit_pairs],
        columns=["layer", "wbits", "abits", "sensitivity"],
    )
    problem = build_problem(workload, target, unscored, bit_pairs)
    if latency_of is not None:
        uniform = predicted_uniform(problem, *latency_of)
        if uniform is None:
            raise InputError(
                f"--latency-of W{latency_of[0]}A{latency_of[1]}: {target.name} does not support those bits"
            )
        limits = replace(limits, latency_ms=uniform["latency_ms"])
    allocate(problem, limits).check()
    lap("cost_table")
    # the first images read: a broken one in a big folder fails here, and synthetic images are made here, once
    # the budget is known to be feasible
    batch = model_data.calib_batch(sensitivity_images, seed)
    lap("calibration_images")
    # progress starts only once every input has been checked: an error is then the only line on stderr
    say(f"workload and cost table: {name} on {target.name}, the budget can be met")

    form = hessian_form if sensitivity == "hessian" else "trace"
    say(f"sensitivity ({sensitivity}, {form} form) for {len(workload.gemms)} GEMMs × {len(bit_pairs)} bit pairs")
    scores = score_options(
        net,
        batch,
        bit_pairs,
        method=sensitivity,
        form=form,
        act_kind=act_kind,
        max_draws=max_draws,
        quadratic_draws=quadratic_draws,
        estimator=quadratic_estimator,
        seed=seed,
        progress=progress,
    )
    problem = problem.with_sensitivity(scores)
    lap("sensitivity")

    say("solving the ILP")
    allocation = allocate(problem, limits).check()
    unresolved = unresolved_layers(allocation, scores, z=UNRESOLVED_Z)
    for flip in unresolved:
        say(
            f"unresolved within {UNRESOLVED_Z:g} standard errors: {flip.layer} W{flip.chosen[0]}A{flip.chosen[1]}"
            f" could be W{flip.flipped[0]}A{flip.flipped[1]}"
        )
    front = pareto_front(problem, points=pareto_points, limits=limits) if pareto_points >= 2 else None
    lap("ilp")

    say("quantizing, calibrating and evaluating")
    net.eval()

    def loss(model: nn.Module) -> float | None:
        return evaluate_data(model, model_data)[1]

    accuracy_fp32 = evaluate_data(net, model_data)[0]
    plan = _plan_with_kind({**allocation.plan(), "model": name}, act_kind)  # the model's name, not its class
    qmodel, accuracy, kinds = quantized_accuracy(
        net, plan, model_data, calib_images=calib_images, act_kind=act_kind, seed=seed
    )
    rows = []
    for wbits, abits in baselines:
        cost = predicted_uniform(problem, wbits, abits)
        if cost is None:
            continue
        base_model, base_accuracy, _ = quantized_accuracy(
            net,
            BitPlan.uniform(name, wbits, abits, act_kind),
            model_data,
            calib_images=calib_images,
            act_kind=act_kind,
            seed=seed,
        )
        rows.append(Baseline(wbits, abits, accuracy=base_accuracy, test_loss=loss(base_model), **cost))
    lap("accuracy")

    report = None
    if verify:
        from quant.verify import verify_bit_exact

        # with no labelled evaluation images, the calibration images serve: bit-exactness needs no labels
        images = (
            model_data.eval_tensors(verify_images)[0]
            if model_data.num_eval
            else model_data.calib_batch(verify_images, seed + 1)[0]
        )
        say(f"verifying the integer-only model on {len(images)} images")
        report = verify_bit_exact(qmodel, images)
        lap("verify")

    result = PipelineResult(
        model=name,
        target=target.name,
        allocation=allocation,
        accuracy_fp32=accuracy_fp32,
        accuracy=accuracy,
        test_loss_fp32=loss(net),
        test_loss=loss(qmodel),
        baselines=tuple(rows),
        pareto=front,
        calibration=kinds,
        verify=report,
        seconds=seconds,
        sensitivity=dict(scores.attrs.get("estimator", {})),
        sensitivity_se={
            (str(r.layer), int(r.wbits), int(r.abits)): float(r.sensitivity_se) for r in scores.itertuples(index=False)
        },
        unresolved=unresolved,
        data=model_data.to_json(),
    )
    if out is not None:
        result = _write_outputs(result, Path(out), plan, target, qmodel, tuple(exports))
        lap("write")
    return result


OUTPUT_FILES: dict[str, str] = {
    "plan": "plan.json",
    "problem": "problem.csv",
    "report": "report.md",
    "bits_plot": "bits.png",
    "pareto_plot": "pareto.png",
    "result": "result.json",
}
"""What ``run_pipeline(out=...)`` writes (key in ``PipelineResult.outputs`` → file name); the folder is replaced
as a whole (``allocator.outputs.replace_folder``), so it may hold nothing else."""
OWNED_FILES: tuple[str, ...] = (*OUTPUT_FILES.values(), *EXPORT_FILES.values())
"""Every name an output folder may hold: the files above and ``allocate --export``'s exports."""


def _digits_or_folder(model: nn.Module, data: str, seed: int) -> ModelData:
    """Data for a model given as an ``nn.Module``: checked against its input size and channels."""
    from quant.data import model_data_config, open_data

    return open_data(data, model_data_config(model), seed=seed, model_label=type(model).__name__)


def _write_outputs(
    result: PipelineResult,
    out: Path,
    plan: BitPlan,
    target: sim.Target,
    qmodel: nn.Module | None = None,
    exports: tuple[str, ...] = (),
) -> PipelineResult:
    """Write every file into a staging folder, then swap it in for ``out`` whole: no half-written results and no
    stale files of an earlier run. ``exports``: ``quant.exports`` formats of the planned model, written beside
    plan.json (``EXPORT_FILES``)."""
    from allocator.pipeline import plots

    files = dict(OUTPUT_FILES)
    if result.pareto is None:
        files.pop("pareto_plot")
    final = Path(os.path.abspath(out))
    files.update({f"export_{fmt}": EXPORT_FILES[fmt] for fmt in exports})
    result = replace(result, outputs={key: str(final / name) for key, name in files.items()})

    def write(staging: Path) -> PipelineResult:
        nonlocal result
        if exports:
            from quant.exports import export

            written = {}
            for fmt in exports:
                done = export(qmodel, fmt, staging / EXPORT_FILES[fmt], model_name=result.model)
                written[fmt] = {**done.to_json(), "path": str(final / EXPORT_FILES[fmt])}
                written[fmt]["files"] = {str(final / Path(f).relative_to(staging)): n for f, n in done.files.items()}
            result = replace(result, exports=written)
        plan.save(staging / files["plan"])
        table = result.allocation.problem.to_frame()
        table.insert(
            table.columns.get_loc("sensitivity") + 1,
            "sensitivity_se",
            [result.sensitivity_se.get((r.layer, r.wbits, r.abits), 0.0) for r in table.itertuples(index=False)],
        )
        table.to_csv(staging / files["problem"], index=False)
        plots.bits_heatmap(result.allocation.plan(), staging / files["bits_plot"])
        if result.pareto is not None:
            baselines = pd.DataFrame(
                [{"latency_ms": b.latency_ms, "score": b.score, "label": b.label} for b in result.baselines]
            )
            predicted = result.allocation.predicted
            chosen = {"latency_ms": predicted.latency_ms, "score": result.allocation.objective} if predicted else None
            front = result.pareto.to_frame().rename(columns={"objective": "score"}).dropna(subset=["score"])
            plots.pareto_plot(
                front, staging / files["pareto_plot"], baselines=baselines, chosen=chosen, higher_is_better=False
            )
        (staging / files["report"]).write_text(_report(result, target, files.values()))
        (staging / files["result"]).write_text(json.dumps(result.to_json(), indent=1, default=json_default) + "\n")
        return result

    return replace_folder(out, write, owned=OWNED_FILES)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _report(result: PipelineResult, target: sim.Target, files: Iterable[str] = OUTPUT_FILES.values()) -> str:
    a = result.allocation
    p = a.predicted
    lines = [
        f"# mixbit: {result.model} on {target.name}",
        "",
        f"Solver status **{a.status}**, Ω = {a.objective:.6g}, limits: "
        + ", ".join(f"{k} {v}" for k, v in a.limits.to_json().items() if v not in (None, False, [])),
        "",
        "| plan | latency (ms) | size (MB) | BOPs (G) | Ω | accuracy | test loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if p is not None:
        lines.append(
            f"| **mixed (ILP)** | {p.latency_ms:.4f} | {p.size_mb:.4f} | {p.bops:.4f} | {a.objective:.4g} "
            f"| {_pct(result.accuracy)} | {_loss(result.test_loss)} |"
        )
    for b in result.baselines:
        lines.append(
            f"| {b.label} | {b.latency_ms:.4f} | {b.size_mb:.4f} | {b.bops:.4f} | {b.score:.4g} | {_pct(b.accuracy)} "
            f"| {_loss(b.test_loss)} |"
        )
    lines += [
        "",
        f"FP32 accuracy: {_pct(result.accuracy_fp32)}, test loss {_loss(result.test_loss_fp32)} (mean cross-entropy"
        " on the held-out images; it separates plans whose accuracy differs by a few images).",
        "",
    ]
    if result.verify is not None:
        v = result.verify.to_json()
        lines += [f"Integer-only model vs fake-quant model: {v['checked']} checked, {v['mismatches']} mismatches.", ""]
    estimator = result.sensitivity
    if estimator:
        lines += [
            f"Sensitivity: {estimator.get('form', '?')} form, estimator {estimator.get('estimator', '?')}"
            + (f" ({estimator['draws']} draws)" if estimator.get("draws") else "")
            + ". Ω ± its standard error below.",
            "",
        ]
    if result.unresolved:
        lines += [f"Layers whose bits flip within {UNRESOLVED_Z:g} standard errors of their scores:", ""]
        lines += [
            f"- {f.layer}: W{f.chosen[0]}A{f.chosen[1]} could be W{f.flipped[0]}A{f.flipped[1]}"
            for f in result.unresolved
        ]
        lines.append("")
    lines += [
        "## Bits per layer",
        "",
        "| layer | wbits | abits | Ω | ± | latency (cycles) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in a.to_frame().itertuples(index=False):
        se = result.sensitivity_se.get((row.layer, row.wbits, row.abits), 0.0)
        cells = [row.layer, row.wbits, row.abits, f"{row.sensitivity:.4g}", f"{se:.2g}", f"{row.latency_cycles:,.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    about = {"plan.json": "plan.json (bit plan)", "problem.csv": "problem.csv (the ILP's whole input)"}
    listed = [about.get(name, name) for name in files if name not in ("report.md", "result.json")]
    lines += ["", f"Files: {', '.join(listed)}.", ""]
    return "\n".join(lines)
