"""The whole job: model and board in, per-layer bits, predicted cost, accuracy and a bit-exactness proof out.

workload (sim) → cost table per (layer, bits) (sim) → sensitivity Ω (Hessian or Fisher) → ILP → quantize and
calibrate with the chosen plan (quant) → accuracy on held-out data → integer-only model checked against the
fake-quant model (``verify``) → files under ``out``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

import sim
from allocator.bridge.workload import workload_from_model
from allocator.ilp.model import Allocation, Limits, ParetoFront, allocate, pareto_front
from allocator.ilp.problem import Problem, build_problem
from allocator.ilp.robust import Flip, unresolved_layers
from allocator.outputs import check_output_dir, replace_folder
from allocator.pipeline.meter import StageMeter, StageRecord
from allocator.sensitivity.configs import FisherConfig, HessianQuadraticConfig, HessianTraceConfig, ScorerConfig
from allocator.sensitivity.lampq import TypeAwareFisherConfig
from allocator.sensitivity.pmq import PMQConfig
from allocator.sensitivity.scores import quantizable_layers, sensitivity_table
from allocator.serialize import json_default
from allocator.torchenv import keep_threads
from quant.calibrate import calibrate_
from quant.data import ModelData, as_model_data, evaluate_data
from quant.inputs import DataOptions, model_and_data
from quant.plan import BitPlan
from quant.quantize import QuantConfig, quantize_
from quant.testbed import Split
from sim.errors import InputError

__all__ = [
    "Baseline",
    "Evaluation",
    "PipelineConfig",
    "PipelineResult",
    "Solution",
    "budget_stage",
    "costs_stage",
    "evaluate_stage",
    "load_stage",
    "predicted_uniform",
    "quantized_accuracy",
    "run_pipeline",
    "run_stages",
    "score_options",
    "scores_stage",
    "sized_config",
    "solve_stage",
    "verify_stage",
    "write_stage",
]

EXPORT_FILES = {"qonnx": "model.qonnx.onnx", "onnx-int": "model.int.onnx", "npz": "npz"}
"""Where ``allocate --export`` writes each format inside the output folder (npz: a folder)."""
DEFAULT_BASELINES: tuple[tuple[int, int], ...] = ((8, 8), (6, 6), (4, 8), (4, 4), (3, 4))
SENSITIVITY_METHODS: tuple[str, ...] = ("hessian", "fisher", "fisher-type", "pmq")
"""``--sensitivity`` choices: the Hessian (default), Fisher with each operand scaled by its type mean, LampQ's
type-aware Fisher (``allocator.sensitivity.lampq``), PMQ's light metric in HTQ's form
(``allocator.sensitivity.pmq``)."""
SOLVERS: dict[str, str] = {"ilp": "ilp", "pareto": "pmq-pareto"}
"""``--solver`` name → ``allocate``'s method: the ILP, or PMQ's Pareto-frontier search."""
# standard errors a score may move (against the chosen option) before a layer counts as unresolved (≈ 95 %)
UNRESOLVED_Z = 2.0
VERIFY_BATCH = 2
"""Images the integer-only check compares at a time: every quantization point's int64 codes of the images in
flight are held by both models, so this bounds the verify stage's memory. DeiT-S with 8 at a time rose from
2,781 to 5,460 MiB resident in verify (≈ 335 MiB per image) at ≈ 1 s per image either way."""
BIG_MODEL_PARAMETERS = 5_000_000
"""Models with at least this many parameters get the ``BIG_CPU_DEFAULTS`` on a CPU (as ``quant.synthetic``'s steps).
The testbeds have < 0.2 M; DeiT-T 5.7 M, DeiT-S 22 M, ViT-B 86 M, Swin-T 28 M."""
SMALL_DEFAULTS: dict[str, int | None] = {
    "sensitivity_images": 128,
    "quadratic_draws": None,
    "calib_images": 256,
    "verify_images": 200,
}
BIG_CPU_DEFAULTS: dict[str, int | None] = {
    "sensitivity_images": 4,
    "quadratic_draws": 32,
    "calib_images": 32,
    "verify_images": 32,
}
"""What a big model gets on a CPU when the user leaves a setting out. Measured on this 2-core machine (DeiT-S,
random weights, torch on 1 thread, load ≈ 4): one Hessian-vector product costs ≈ 3.4 s per image, and the
random-sign quadratic form needs 6 bit widths × draws × images of them (≈ 12,000, ≈ 11 h, at the small-model
defaults of 128 images × 32 draws). 32 draws per bit width lets the random-sign form group its products by role,
2 per role (ViTs have 16 roles: 8 GEMM kinds × weight and input), which keeps each block's strongly coupled
operands out of each other's products: on the digits testbed it ranked damage within 0.02 of the exact form on six
seeds, where 4 all-shared draws (the earlier default here) were 0.05-0.10 off (bench/sensitivity.py part
defaults); its DeiT-S cost is in bench/results/pipeline_scale.json. Quantizing, calibrating (MSE) and evaluating
one plan on 80 + 80 images took ≈ 40 s. 32 calibration images is PSAQ-ViT's and LampQ's setting; the integer
check runs at ≈ 1 s per image."""


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
    # each stage's wall seconds and the process's resident-memory high-water mark at its end (MiB), the run's peak
    stages: tuple[StageRecord, ...] = ()
    peak_rss_mb: float | None = None
    device: str = "cpu"
    threads: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # counts used and which the model's size chose
    # LampQ's iterative update, one ``allocator.pipeline.refine.RefineRound`` per plan (round 0 first); () without
    refine_rounds: tuple[Any, ...] = ()
    solver: str = "ilp"
    detection: dict[str, Any] = field(default_factory=dict)  # allocate --detection: the detector costed (else {})

    def to_frame(self) -> pd.DataFrame:
        """The chosen option of every layer with its sensitivity and costs."""
        return self.allocation.to_frame()

    def to_json(self) -> dict[str, Any]:
        """The contract's ``allocate`` object plus model, target, accuracy, baselines, outputs, each stage's seconds
        and peak resident memory (``stages``, ``peak_rss_mb``), and ``clock_mhz``/``fixed_cycles``/``fixed_energy_mj``
        (the problem's plan-independent terms: re-solvable from ``options`` and ``constraints`` alone)."""
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
                "stages": [stage.to_json() for stage in self.stages],
                "peak_rss_mb": self.peak_rss_mb,
                "device": self.device,
                "threads": self.threads,
                "settings": self.settings,
                "data": self.data,
                # with these, ``options`` and ``constraints`` are the whole ILP (allocator.ilp.problem_from_json)
                "clock_mhz": self.allocation.problem.clock_mhz,
                "fixed_cycles": self.allocation.problem.fixed_cycles,
                "fixed_energy_mj": self.allocation.problem.fixed_energy_mj,
            }
        )
        if self.exports:
            obj["exports"] = self.exports
        obj["solver"] = self.solver
        if self.refine_rounds:
            obj["refine"] = {"rounds": [r.to_json() for r in self.refine_rounds]}
        if self.detection:
            obj["detection"] = self.detection
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
    layerwise = frame["abits_low"] == 0 if "abits_low" in frame.columns else True  # not the token-split options
    rows = frame[(frame["wbits"] == wbits) & (frame["abits"] == abits) & layerwise]
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
    progress: bool = False,
) -> tuple[nn.Module, float | None, dict[str, str]]:
    """Quantize a copy of ``model`` with ``plan``, calibrate it on training images (``calibration``: minmax,
    percentile or mse), and measure test accuracy (None without labelled evaluation data). The copy lives on
    ``model``'s device."""
    qmodel, kinds, accuracy, _ = _quantized(
        model, plan, as_model_data(data), calib_images, act_kind, calibration, seed, progress
    )
    return qmodel, accuracy, kinds


def _quantized(
    model: nn.Module,
    plan: BitPlan,
    data: ModelData,
    calib_images: int,
    act_kind: str,
    calibration: str,
    seed: int,
    progress: bool,
) -> tuple[nn.Module, dict[str, str], float | None, float | None]:
    """(quantized copy, activation kinds chosen, accuracy, mean test cross-entropy): one evaluation pass."""
    torch.manual_seed(seed)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    qmodel = quantize_(copy.deepcopy(model), QuantConfig(plan=plan, act_kind=act_kind)).to(device)
    calib, _ = data.calib_batch(calib_images, seed)
    report = calibrate_(qmodel, calib, method=calibration, progress=progress)
    del calib
    accuracy, test_loss = evaluate_data(qmodel, data)
    return qmodel, report.choices, accuracy, test_loss


def _quantized_evaluation(
    net: nn.Module, plan: BitPlan, data: ModelData, config: PipelineConfig
) -> tuple[nn.Module, dict[str, str], float | None, float | None]:
    return _quantized(net, plan, data, config.calib_images, config.act_kind, "mse", config.seed, config.progress)


def _plan_with_kind(plan: dict[str, Any], act_kind: str, token_score: str = "norm") -> BitPlan:
    # a layer's dataflow (per-layer-dataflow arrays) is hardware: quant's plan has bits and quantizer kinds only
    layers = {
        name: {**{k: v for k, v in bits.items() if k != "dataflow"}, "act_kind": act_kind}
        for name, bits in plan["layers"].items()
    }
    for bits in layers.values():
        if "abits_low" in bits:
            bits["token_score"] = token_score
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
    device: str | None = None,
    plan: BitPlan | None = None,
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
    GEMM inputs (``auto`` chooses kinds only at calibration, so its errors are priced as uniform). ``device``:
    where the scores are computed (None: the model's). ``method``: one of ``SENSITIVITY_METHODS``. ``plan``: take
    the scores on a copy quantized with that plan instead of 8 bits (LampQ's iterative update re-scores there).
    """
    quant_config = QuantConfig(wbits=8, abits=8) if plan is None else QuantConfig(plan=plan)
    probe = quantize_(copy.deepcopy(net), quant_config)
    if device is not None:
        probe = probe.to(device)
    calibrate_(probe, batch[0])
    kinds = None if act_kind in ("uniform", "auto") else dict.fromkeys(quantizable_layers(probe), act_kind)
    common: dict[str, Any] = {
        "act_method": act_method,
        "act_kinds": kinds,
        "batch_size": batch_size,
        "seed": seed,
        "progress": progress,
        "device": device,
    }
    config: ScorerConfig
    if method == "fisher":
        config = FisherConfig(**common)
    elif method == "fisher-type":
        config = TypeAwareFisherConfig(**common)
    elif method == "pmq":
        config = PMQConfig(**common)
    elif form == "trace":
        config = HessianTraceConfig(max_draws=max_draws, **common)
    else:
        if quadratic_draws is not None and estimator == "auto":
            estimator = "random_sign"
        draws = {} if quadratic_draws is None else {"draws": quadratic_draws}
        config = HessianQuadraticConfig(estimator=estimator, **draws, **common)  # type: ignore[arg-type]
    scores = sensitivity_table(probe, F.cross_entropy, batch, bit_pairs, config=config)
    return scores[["layer", "wbits", "abits", "sensitivity", "sensitivity_se"]]


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Everything a pipeline run is asked to do, checked once when made (``InputError`` for bad values).

    ``target``: the board; ``model_name``: names the model in the results; ``limits``: the budgets;
    ``latency_of=(w, a)`` sets the latency limit to the predicted latency of the uniform WwAa plan.
    ``sensitivity``: one of ``SENSITIVITY_METHODS``; ``hessian_form``: quadratic (ΔᵀHΔ) or trace (HAWQ-V2,
    Hutchinson with at most ``max_draws`` draws); the quadratic form's ``quadratic_estimator``: auto (exact for
    small models, random-sign products for big ones), exact or random_sign with ``quadratic_draws`` products per
    bit width (given alone it asks for random signs). ``act_kind``: activation quantizer kind of every plan. Counts left
    None follow the model's size (``sized_config``: ``SMALL_DEFAULTS``, or ``BIG_CPU_DEFAULTS`` for a model of
    ``BIG_MODEL_PARAMETERS`` or more on a CPU).
    ``sensitivity_images``: images the scores are taken on; ``calib_images``: images each plan is calibrated on;
    ``baselines``: uniform (wbits, abits) plans evaluated beside the ILP plan; ``pareto_points``: ILP solves on
    the latency–Ω front (< 2: none). ``verify``: check the integer-only model on ``verify_images`` images,
    ``verify_batch`` at a time. ``out``: folder for the files (checked now, written last); ``exports``:
    ``quant.exports`` formats written there. ``device``: where the torch stages run (scores, calibration,
    evaluation; the integer-only check stays on the CPU, its int64 and float64 reference need no GPU).
    ``progress``: tqdm bars on stderr. ``solver``: ``ilp`` or ``pareto`` (PMQ's Pareto-frontier search,
    ``allocator.ilp.pmq``). ``refine``: rounds of LampQ's iterative update after the first solve (re-score on the
    model quantized with the current plan, re-solve; ``allocator.pipeline.refine``); None: none.
    ``detection``: (height, width) pixels: the plan is costed as the backbone of a detector at that size with an FPN
    neck at fixed bits (``allocator.bridge.detection``); scores, quantization and accuracy stay the model's on its
    data (detection accuracy needs COCO, which is not shipped).
    ``patchwise``: a token fraction in (0, 1) adds patch-wise options to the
    ILP (``allocator.ilp.patchwise``; the target needs ``[accelerator.patchwise]``), their tokens ranked by
    ``token_score`` (``quant.tokens``: norm, cls_attn or random).
    """

    target: sim.Target
    model_name: str = ""
    limits: Limits = field(default_factory=Limits)
    latency_of: tuple[int, int] | None = None
    sensitivity: str = "hessian"
    hessian_form: str = "quadratic"
    act_kind: str = "uniform"
    sensitivity_images: int | None = None
    max_draws: int = 50
    quadratic_draws: int | None = None
    quadratic_estimator: str = "auto"
    calib_images: int | None = None
    baselines: tuple[tuple[int, int], ...] = DEFAULT_BASELINES
    pareto_points: int = 12
    verify: bool = False
    verify_images: int | None = None
    verify_batch: int = VERIFY_BATCH
    out: Path | None = None
    exports: tuple[str, ...] = ()
    device: str = "cpu"
    seed: int = 0
    progress: bool = False
    solver: str = "ilp"
    refine: int | None = None
    detection: tuple[int, int] | None = None
    patchwise: float | None = None
    token_score: str = "norm"

    def __post_init__(self) -> None:
        from quant.tokens import TOKEN_SCORES

        if self.token_score not in TOKEN_SCORES:
            choices = ", ".join(TOKEN_SCORES)
            raise InputError(f"--token-score: unknown score {self.token_score!r}; choose from {choices}")
        if self.patchwise is not None:
            from sim.patchwise import check_fraction

            object.__setattr__(self, "patchwise", check_fraction(self.patchwise, "--patchwise"))
            if self.target.accelerator.patchwise is None:
                raise InputError(
                    f"--patchwise: target {self.target.name!r} has no patch-wise support (no [accelerator.patchwise] "
                    "table in its file)"
                )
        if self.sensitivity not in SENSITIVITY_METHODS:
            raise InputError(
                f"unknown sensitivity method {self.sensitivity!r}; choose {', '.join(SENSITIVITY_METHODS)}"
            )
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; choose {' or '.join(SOLVERS)}")
        if self.refine is not None and (isinstance(self.refine, bool) or self.refine < 1):
            raise InputError(f"refine must be at least 1 round (leave it out for none), got {self.refine}")
        if self.hessian_form not in ("quadratic", "trace"):
            raise InputError(f"unknown Hessian score form {self.hessian_form!r}; choose quadratic or trace")
        if self.max_draws < 1:
            raise InputError(f"max_draws must be at least 1, got {self.max_draws}")
        if self.quadratic_draws is not None and self.quadratic_draws < 1:
            raise InputError(
                f"quadratic_draws must be at least 1 (or None for the exact form), got {self.quadratic_draws}"
            )
        for name in ("sensitivity_images", "calib_images", "verify_images", "verify_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        object.__setattr__(self, "baselines", tuple((int(w), int(a)) for w, a in self.baselines))
        object.__setattr__(self, "exports", tuple(self.exports))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if self.detection is not None:
            from allocator.bridge.detection import parse_img_size

            height, width = self.detection
            object.__setattr__(self, "detection", parse_img_size(f"{height}x{width}", "--detection-size"))
        if self.exports:
            from quant.exports import check_format

            for fmt in self.exports:
                check_format(fmt)
            if self.out is None:
                raise InputError("--export needs --out: the exports are written beside plan.json")

    @property
    def bit_pairs(self) -> list[tuple[int, int]]:
        """Every (wbits, abits) the target's array supports."""
        accel = self.target.accelerator
        return [(w, a) for w in accel.weight_bits for a in accel.act_bits]

    @property
    def score_form(self) -> str:
        if self.sensitivity == "pmq":
            return "pmq"
        return self.hessian_form if self.sensitivity == "hessian" else "trace"


def sized_config(config: PipelineConfig, net: nn.Module) -> tuple[PipelineConfig, dict[str, Any]]:
    """``config`` with every count it left None set by the model's size and the device, and what was chosen
    (``settings`` in the JSON: the parameter count, the rule, and which values the size chose)."""
    parameters = sum(p.numel() for p in net.parameters())
    big = parameters >= BIG_MODEL_PARAMETERS and torch.device(config.device).type == "cpu"
    defaults = dict(BIG_CPU_DEFAULTS if big else SMALL_DEFAULTS)
    if config.sensitivity != "hessian" or config.score_form != "quadratic" or config.quadratic_estimator == "exact":
        defaults.pop("quadratic_draws")  # draws belong to the random-sign quadratic form only
    chosen = {name: value for name, value in defaults.items() if getattr(config, name) is None and value is not None}
    config = replace(config, **chosen)
    settings = {
        "model_parameters": parameters,
        "size_rule": (
            f"{'big' if big else 'small'}: {parameters / 1e6:.1f} M parameters on {config.device} "
            f"({'at least' if parameters >= BIG_MODEL_PARAMETERS else 'under'} {BIG_MODEL_PARAMETERS / 1e6:g} M)"
        ),
        "chosen_by_size": sorted(chosen),
        **{name: getattr(config, name) for name in SMALL_DEFAULTS},
    }
    return config, settings


@dataclass(frozen=True)
class Solution:
    """The solve stage's answer: the allocation, layers whose bits flip within ``UNRESOLVED_Z`` standard errors,
    and the latency–Ω front (None when not asked for)."""

    allocation: Allocation
    unresolved: tuple[Flip, ...]
    front: ParetoFront | None


@dataclass(frozen=True)
class Evaluation:
    """The evaluate stage's answer: the ILP plan's quantized model (on the CPU) and every plan's accuracy."""

    plan: BitPlan
    qmodel: nn.Module
    kinds: dict[str, str]
    accuracy_fp32: float | None
    test_loss_fp32: float | None
    accuracy: float | None
    test_loss: float | None
    baselines: tuple[Baseline, ...]


def load_stage(model: str | nn.Module, data: str | ModelData, config: PipelineConfig) -> tuple[nn.Module, ModelData]:
    """The float model (eval mode) and its data, every check done (``quant.inputs.model_and_data`` orders the
    checkpoint and data checks before anything expensive)."""
    if isinstance(data, ModelData):
        if not isinstance(model, nn.Module):
            raise TypeError("run_pipeline: with ModelData, pass the model it was opened for (an nn.Module)")
        return model.eval(), data
    if isinstance(model, nn.Module):
        return model.eval(), as_model_data(_digits_or_folder(model, data, config.seed))
    net, _, model_data = model_and_data(
        model, DataOptions(data=data, seed=config.seed), device=config.device, progress=config.progress
    )
    return net, model_data


def costs_stage(net: nn.Module, config: PipelineConfig) -> Problem:
    """The workload (``allocator.workload_from_model``) and its cost table per layer and bit pair, Ω = 0."""
    return detection_costs_stage(net, config)[0]


def detection_costs_stage(net: nn.Module, config: PipelineConfig) -> tuple[Problem, dict[str, Any]]:
    """:func:`costs_stage`, and with ``config.detection`` the detector's backbone costed at that size instead, its
    FPN neck (fixed bits) added to every plan's fixed cycles and energy; the second item describes that ({} without)."""
    workload = workload_from_model(net)
    detection = None
    if config.detection is not None:
        from allocator.bridge.detection import detection_costs

        detection = detection_costs(net, workload, config.detection, config.target, config.model_name)
        workload = detection.backbone
    bit_pairs = config.bit_pairs
    unscored = pd.DataFrame(
        [(g.name, w, a, 0.0) for g in workload.gemms for w, a in bit_pairs],
        columns=["layer", "wbits", "abits", "sensitivity"],
    )
    # an array that switches dataflow per layer runs each option in its fastest dataflow, or its least-energy
    # one when energy is the only budget (--latency-of is a latency budget too)
    prefer = "cycles" if config.latency_of is not None else config.limits.dataflow_preference()
    problem = build_problem(workload, config.target, unscored, bit_pairs, prefer=prefer)
    if detection is None:
        return problem, {}
    problem = replace(
        problem,
        fixed_cycles=problem.fixed_cycles + detection.neck_cycles,
        fixed_energy_mj=problem.fixed_energy_mj + detection.neck_energy_mj,
    )
    return problem, detection.to_json()


def budget_stage(problem: Problem, config: PipelineConfig) -> Limits:
    """The limits to solve under (``latency_of`` resolved), checked against the costs with Ω = 0: an impossible
    budget fails here, in seconds, before the sensitivity pass (``InfeasibleError``, an ``InputError``)."""
    limits = config.limits
    if config.latency_of is not None:
        uniform = predicted_uniform(problem, *config.latency_of)
        if uniform is None:
            w, a = config.latency_of
            raise InputError(f"--latency-of W{w}A{a}: {config.target.name} does not support those bits")
        limits = replace(limits, latency_ms=uniform["latency_ms"])
    allocate(problem, limits).check()
    return limits


def config_scores(
    net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], config: PipelineConfig, plan: BitPlan | None = None
) -> pd.DataFrame:
    """``score_options`` with the config's scorer settings (at ``plan``'s quantized model when given)."""
    return score_options(
        net,
        batch,
        config.bit_pairs,
        method=config.sensitivity,
        form=config.score_form,
        act_kind=config.act_kind,
        max_draws=config.max_draws,
        quadratic_draws=config.quadratic_draws,
        estimator=config.quadratic_estimator,
        seed=config.seed,
        progress=config.progress,
        device=config.device,
        plan=plan,
    )


def scores_stage(
    net: nn.Module, model_data: ModelData, problem: Problem, config: PipelineConfig
) -> tuple[Problem, pd.DataFrame]:
    """Ω of every option on ``sensitivity_images`` calibration images (the first images decoded: a broken one in
    a big folder fails here; synthetic images are made here), and the problem with those scores."""
    batch = model_data.calib_batch(config.sensitivity_images, config.seed)
    scores = config_scores(net, batch, config)
    problem = problem.with_sensitivity(scores)
    if config.patchwise is not None:
        problem = patchwise_stage(net, batch[0], problem, config)
    return problem, scores


def patchwise_stage(net: nn.Module, images: torch.Tensor, problem: Problem, config: PipelineConfig) -> Problem:
    """``problem`` with token-split options at ``config.patchwise`` (``allocator.ilp.patchwise``): each Linear
    GEMM's token importance share measured on ``images``, its split costs from the simulator."""
    from allocator.ilp.patchwise import split_layers, with_token_splits
    from allocator.sensitivity.tokens import token_shares

    assert config.patchwise is not None
    workload = workload_from_model(net)
    layers = split_layers(workload)
    device = next(net.parameters()).device
    shares = token_shares(net, images.to(device), config.patchwise, layers, score=config.token_score)
    return with_token_splits(problem, workload, config.target, config.patchwise, shares, layers=layers)


def solve_stage(problem: Problem, limits: Limits, scores: pd.DataFrame, config: PipelineConfig) -> Solution:
    """The ILP's plan under ``limits``, its unresolved layers and the Pareto front."""
    allocation = allocate(problem, limits, method=SOLVERS[config.solver]).check()  # type: ignore[arg-type]
    unresolved = unresolved_layers(allocation, scores, z=UNRESOLVED_Z)
    front = pareto_front(problem, points=config.pareto_points, limits=limits) if config.pareto_points >= 2 else None
    return Solution(allocation, unresolved, front)


def evaluate_stage(net: nn.Module, model_data: ModelData, solution: Solution, config: PipelineConfig) -> Evaluation:
    """FP32 accuracy, then the ILP plan and each uniform baseline quantized, calibrated on ``calib_images``
    images and evaluated (accuracy and mean test cross-entropy, one pass each) on ``config.device``. The ILP
    plan's model is returned on the CPU (verify and export run there)."""
    problem = solution.allocation.problem
    name = config.model_name
    device = torch.device(config.device)
    net = net.eval().to(device)
    plan = _plan_with_kind({**solution.allocation.plan(), "model": name}, config.act_kind, config.token_score)
    uniform = [(w, a, cost) for w, a in config.baselines if (cost := predicted_uniform(problem, w, a)) is not None]
    bar = tqdm(
        total=2 + len(uniform), desc="evaluating plans", unit="plan", disable=not config.progress, file=sys.stderr
    )
    with bar:
        accuracy_fp32, test_loss_fp32 = evaluate_data(net, model_data)
        bar.update()
        qmodel, kinds, accuracy, test_loss = _quantized_evaluation(net, plan, model_data, config)
        bar.update()
        rows = []
        for wbits, abits, cost in uniform:
            uniform_plan = BitPlan.uniform(name, wbits, abits, config.act_kind)
            base_model, _, base_accuracy, base_loss = _quantized_evaluation(net, uniform_plan, model_data, config)
            del base_model  # one quantized copy alive at a time besides the ILP plan's
            rows.append(Baseline(wbits, abits, accuracy=base_accuracy, test_loss=base_loss, **cost))
            bar.update()
    net.cpu()
    return Evaluation(
        plan=plan,
        qmodel=qmodel.cpu(),
        kinds=kinds,
        accuracy_fp32=accuracy_fp32,
        test_loss_fp32=test_loss_fp32,
        accuracy=accuracy,
        test_loss=test_loss,
        baselines=tuple(rows),
    )


def verify_stage(qmodel: nn.Module, model_data: ModelData, config: PipelineConfig, say: Callable[[str], None]) -> Any:
    """The integer-only model against the fake-quant model's exact mode, element by element, on ``verify_images``
    evaluation images (calibration images when there are none: bit-exactness needs no labels), on the CPU."""
    from quant.verify import verify_bit_exact

    images = (
        model_data.eval_tensors(config.verify_images)[0]
        if model_data.num_eval
        else model_data.calib_batch(config.verify_images, config.seed + 1)[0]
    )
    say(f"verifying the integer-only model on {len(images)} images")
    return verify_bit_exact(qmodel.cpu(), images, batch_size=config.verify_batch, progress=config.progress)


def write_stage(
    result: PipelineResult,
    evaluation: Evaluation,
    config: PipelineConfig,
    finish: Callable[[PipelineResult], PipelineResult],
) -> PipelineResult:
    """Every file under ``config.out``, written into a staging folder and swapped in whole. ``finish`` is called
    just before report.md and result.json are written (the meter closes the write stage there)."""
    assert config.out is not None
    return _write_outputs(
        result, config.out, evaluation.plan, config.target, evaluation.qmodel, config.exports, finish=finish
    )


def run_stages(
    net: nn.Module,
    model_data: ModelData,
    config: PipelineConfig,
    *,
    meter: StageMeter | None = None,
    log: Callable[[str], None] | None = None,
) -> PipelineResult:
    """costs → budget → scores → solve → evaluate → verify → write, each timed by ``meter`` (seconds and the
    resident-memory high-water mark at its end); ``net`` and ``model_data`` come from ``load_stage`` or
    ``quant.inputs.model_and_data``. Nothing is written unless every stage before ``write`` succeeded."""
    say = log or (lambda _message: None)
    meter = meter or StageMeter(config.device)
    name = config.model_name or type(net).__name__
    if name != config.model_name:
        config = replace(config, model_name=name)
    config, settings = sized_config(config, net)
    if config.verify:  # a model the integer-only check cannot take fails now, not after the scores
        from quant.integer import integer_unsupported

        unsupported = integer_unsupported(net)
        if unsupported:
            raise InputError(f"--verify: {unsupported}")
    if config.exports:
        from quant.exports import export_unsupported

        unsupported = export_unsupported(net)
        if unsupported:
            raise InputError(f"--export: {unsupported}")
    with meter.stage("costs"):
        problem, detection = detection_costs_stage(net, config)
    with meter.stage("budget"), keep_threads():
        limits = budget_stage(problem, config)
    # progress starts only once every input has been checked: an error is then the only line on stderr
    say(f"workload and cost table: {name} on {config.target.name}, the budget can be met")
    say(
        f"sensitivity ({config.sensitivity}, {config.score_form} form) for {len(problem.layers)} GEMMs × "
        f"{len(config.bit_pairs)} bit pairs on {config.sensitivity_images} images"
        + (f", {config.quadratic_draws} random-sign draws" if config.quadratic_draws else "")
        + f" ({settings['size_rule']}; set by size: {', '.join(settings['chosen_by_size']) or 'nothing'})"
    )
    with meter.stage("scores"):
        problem, scores = scores_stage(net, model_data, problem, config)
    say("solving the ILP")
    with meter.stage("solve"), keep_threads():
        solution = solve_stage(problem, limits, scores, config)
    rounds: tuple[Any, ...] = ()
    if config.refine:
        from allocator.pipeline.refine import refine_rounds

        say(f"refining: up to {config.refine} rounds of re-scoring on the quantized model and re-solving")
        with meter.stage("refine"):
            allocation, refined, rounds = refine_rounds(
                net, model_data, problem, limits, solution.allocation, config, log=say
            )
            if refined is not None:
                problem, scores = allocation.problem, refined
                with keep_threads():
                    front = (
                        pareto_front(problem, points=config.pareto_points, limits=limits)
                        if config.pareto_points >= 2
                        else None
                    )
                solution = Solution(allocation, unresolved_layers(allocation, scores, z=UNRESOLVED_Z), front)
    for flip in solution.unresolved:
        say(
            f"unresolved within {UNRESOLVED_Z:g} standard errors: {flip.layer} W{flip.chosen[0]}A{flip.chosen[1]}"
            f" could be W{flip.flipped[0]}A{flip.flipped[1]}"
        )
    say(f"quantizing, calibrating and evaluating {1 + len(config.baselines)} plans")
    with meter.stage("evaluate"):
        evaluation = evaluate_stage(net, model_data, solution, config)
    report = None
    if config.verify:
        with meter.stage("verify"):
            report = verify_stage(evaluation.qmodel, model_data, config, say)

    def metered(result: PipelineResult) -> PipelineResult:
        return replace(
            result,
            seconds=meter.seconds(),
            stages=tuple(meter.records),
            peak_rss_mb=meter.peak_rss_mb(),
        )

    result = metered(
        PipelineResult(
            model=name,
            target=config.target.name,
            allocation=solution.allocation,
            accuracy_fp32=evaluation.accuracy_fp32,
            accuracy=evaluation.accuracy,
            test_loss_fp32=evaluation.test_loss_fp32,
            test_loss=evaluation.test_loss,
            baselines=evaluation.baselines,
            pareto=solution.front,
            calibration=evaluation.kinds,
            verify=report,
            sensitivity=dict(scores.attrs.get("estimator", {})),
            sensitivity_se={
                (str(r.layer), int(r.wbits), int(r.abits)): float(r.sensitivity_se)
                for r in scores.itertuples(index=False)
            },
            unresolved=solution.unresolved,
            data=model_data.to_json(),
            device=config.device,
            threads=torch.get_num_threads(),
            settings=settings,
            refine_rounds=rounds,
            solver=config.solver,
            detection=detection,
        )
    )
    if config.out is None:
        return result

    def finish(written: PipelineResult) -> PipelineResult:
        meter.stop()
        return metered(written)

    meter.start("write")
    try:
        return write_stage(result, evaluation, config, finish)
    finally:
        meter.stop()  # a no-op once ``finish`` has closed the stage


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
    calib_images: int | None = None,
    sensitivity_images: int | None = None,
    max_draws: int = 50,
    quadratic_draws: int | None = None,
    quadratic_estimator: str = "auto",
    verify_images: int | None = None,
    baselines: Sequence[tuple[int, int]] = DEFAULT_BASELINES,
    pareto_points: int = 12,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    exports: Sequence[str] = (),
    device: str = "cpu",
    solver: str = "ilp",
    refine: int | None = None,
    detection: tuple[int, int] | None = None,
    patchwise: float | None = None,
    token_score: str = "norm",
) -> PipelineResult:
    """Choose per-layer bits for ``model`` on ``target`` under ``limits`` and check the result end to end.

    The keyword form of ``PipelineConfig`` + ``load_stage`` + ``run_stages`` (see ``PipelineConfig`` for every
    option). ``data``: ``digits``, an image folder, or ``ModelData`` already opened for ``model``
    (``quant.inputs.model_and_data``: checkpoints, --calib-data, --eval-data, synthetic images); ``model_name``
    names an ``nn.Module`` model in the results. Counts left None follow the model's size (``sized_config``:
    256 calibration, 128 sensitivity and 200 verify images for small models, as before). Raises ``InputError``
    (CLI exit status 2) for bad input and for budgets no plan can meet; nothing is written to ``out`` unless the
    whole run succeeds.
    """
    if out is not None:  # an unusable --out fails now, not after the whole run
        check_output_dir(out, owned=OWNED_FILES)
    config = PipelineConfig(
        target=target if isinstance(target, sim.Target) else sim.load_target(target),
        model_name=model_name or (model if isinstance(model, str) else type(model).__name__),
        limits=limits or Limits(),
        latency_of=latency_of,
        sensitivity=sensitivity,
        hessian_form=hessian_form,
        act_kind=act_kind,
        sensitivity_images=sensitivity_images,
        max_draws=max_draws,
        quadratic_draws=quadratic_draws,
        quadratic_estimator=quadratic_estimator,
        calib_images=calib_images,
        baselines=tuple(baselines),
        pareto_points=pareto_points,
        verify=verify,
        verify_images=verify_images,
        out=None if out is None else Path(out),
        exports=tuple(exports),
        device=device,
        seed=seed,
        progress=progress,
        solver=solver,
        refine=refine,
        detection=detection,
        patchwise=patchwise,
        token_score=token_score,
    )
    meter = StageMeter(device)
    with meter.stage("load"):
        net, model_data = load_stage(model, data, config)
    return run_stages(net, model_data, config, meter=meter, log=log)


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
    finish: Callable[[PipelineResult], PipelineResult] | None = None,
) -> PipelineResult:
    """Write every file into a staging folder, then swap it in for ``out`` whole: no half-written results and no
    stale files of an earlier run. ``exports``: ``quant.exports`` formats of the planned model, written beside
    plan.json (``EXPORT_FILES``). ``finish``: applied to the result just before report.md and result.json are
    written (the pipeline closes its write stage there, so both files carry its timing)."""
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
            from allocator.bridge.widths import datapath_widths
            from quant.exports import export

            widths = datapath_widths(qmodel, plan)  # each GEMM's accumulator as the target's PE model builds it
            written = {}
            for fmt in exports:
                done = export(qmodel, fmt, staging / EXPORT_FILES[fmt], model_name=result.model, widths=widths)
                written[fmt] = {**done.to_json(), "path": str(final / EXPORT_FILES[fmt])}
                written[fmt]["files"] = {str(final / Path(f).relative_to(staging)): n for f, n in done.files.items()}
            result = replace(result, exports=written)
        plan_data = plan.to_dict()
        for choice in result.allocation.chosen:  # a per-layer-dataflow array: each layer's dataflow (sim/plan.py)
            if choice.dataflow:
                plan_data["layers"][choice.layer]["dataflow"] = choice.dataflow
        (staging / files["plan"]).write_text(json.dumps(plan_data, indent=2) + "\n")
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
        if finish is not None:
            result = finish(result)
        (staging / files["report"]).write_text(_report(result, target, files.values()))
        (staging / files["result"]).write_text(json.dumps(result.to_json(), indent=1, default=json_default) + "\n")
        return result

    return replace_folder(out, write, owned=OWNED_FILES)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _report(result: PipelineResult, target: sim.Target, files: Iterable[str] = OUTPUT_FILES.values()) -> str:
    a = result.allocation
    p = a.predicted
    lines = [
        f"# mixbit: {result.model} on {target.name}",
        "",
        f"Solver {result.solver}, status **{a.status}**, Ω = {a.objective:.6g}, limits: "
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
    if result.refine_rounds:
        lines += [
            "## Refinement rounds (LampQ's iterative update)",
            "",
            "Each round re-scores every option on the model quantized with the previous round's plan and solves"
            " again; Ω is under that round's scores.",
            "",
            "| round | Ω | latency (ms) | size (MB) | accuracy | test loss | layers changed |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.round} | {r.objective:.4g} | {r.latency_ms:.4f} | {r.size_mb:.4f} | {_pct(r.accuracy)} "
            f"| {_loss(r.test_loss)} | {r.changed_layers} |"
            for r in result.refine_rounds
        ]
        lines.append("")
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
    if result.stages:
        lines += [
            "## Stages",
            "",
            f"Device {result.device}, {result.threads} torch threads. Peak resident memory is the process's high-water"
            " mark at the end of each stage (it only grows: the stage where it jumps set it).",
            "",
            "| stage | seconds | peak resident memory (MiB) |",
            "|---|---:|---:|",
        ]
        lines += [f"| {stage.name} | {stage.seconds:.1f} | {_mib(stage.peak_rss_mb)} |" for stage in result.stages]
        total = sum(stage.seconds for stage in result.stages)
        lines += [f"| **total** | {total:.1f} | {_mib(result.peak_rss_mb)} |", ""]
    about = {"plan.json": "plan.json (bit plan)", "problem.csv": "problem.csv (the ILP's whole input)"}
    listed = [about.get(name, name) for name in files if name not in ("report.md", "result.json")]
    lines += ["", f"Files: {', '.join(listed)}.", ""]
    return "\n".join(lines)
