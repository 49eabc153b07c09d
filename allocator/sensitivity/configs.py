"""Typed sensitivity configs and the registry that dispatches them (as torchao dispatches quantization configs).

Each scorer is described by a frozen config class; ``score(model, loss_fn, data, bit_pairs, config)`` looks up
the function registered for the config's type and returns the ILP's sensitivity table. New scorers register
with ``@register_scorer(TheirConfig)``; the pipeline and the CLI build configs, never option dictionaries.

- ``HessianQuadraticConfig``: ΔᵀHΔ with the actual quantization errors (``hessian_scores``), exact or with
  random-sign products, the estimator chosen by the model's size unless asked for.
- ``HessianTraceConfig``: HAWQ-V2's Tr(H)/n·‖Δ‖² with Hutchinson traces (``hessian_traces``).
- ``FisherConfig``: empirical-Fisher traces times ‖Δ‖² (``fisher_traces``), each operand scaled by its type mean.
- ``TypeAwareFisherConfig`` (``allocator.sensitivity.lampq``): LampQ's metric, one scale per component type.
- ``PMQConfig`` (``allocator.sensitivity.pmq``): PMQ's light metric in HTQ's form, mask gradient × ‖Δ‖_F.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import pandas as pd
from torch import nn

from sim.errors import InputError

__all__ = [
    "AUTO_EXACT_MAX_PRODUCTS",
    "FisherConfig",
    "HessianQuadraticConfig",
    "HessianTraceConfig",
    "ScorerConfig",
    "register_scorer",
    "registered_scorers",
    "score",
]

# Size rule of the quadratic form's "auto" estimator: exact (one Hessian-vector product per operand and bit
# width) when that needs at most this many products, else random-sign products. Counted by the scorer: the
# digits testbed (mixbit_vit_digits, 4 blocks) on zcu102's 6 weight x 6 activation widths needs 312 and is
# scored exactly; DeiT-T/S (148 operands x 6 widths) need 888 and use random signs. With the limit at 256 the
# digits testbed fell to random signs and `allocate` reported 25 of its 26 layers unresolved within 2 standard
# errors (mixbit allocate --target zcu102 --model mixbit_vit_digits --latency-of W4A4, this machine).
AUTO_EXACT_MAX_PRODUCTS = 512


@dataclass(frozen=True, kw_only=True)
class ScorerConfig:
    """What every scorer shares.

    ``layers``: GEMM names to score (None: every quantizable one); ``activations``: score the GEMM inputs too;
    ``act_method``/``act_kinds``: how activation quantizers are fitted for the errors (as ``quant.calibrate_``'s
    method) and their kind per layer (default uniform); ``batch_size``: samples per autograd graph (None: the
    data's own batches; ``"auto"``: as many as keep one graph near 1 GiB) — what bounds memory; ``seed``;
    ``progress``: a tqdm bar on stderr; ``device``: where to compute (default: the model's).
    """

    layers: tuple[str, ...] | None = None
    activations: bool = True
    act_method: str = "minmax"
    act_kinds: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    batch_size: int | Literal["auto"] | None = "auto"
    seed: int = 0
    progress: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size not in (None, "auto") and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise InputError(
                f"batch_size must be at least 1 (or None for the data's own batches), got {self.batch_size}"
            )
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))

    def common(self) -> dict[str, Any]:
        """The shared fields the scorer functions take as keywords (not act_method/act_kinds: errors take those)."""
        return {
            "layers": None if self.layers is None else list(self.layers),
            "activations": self.activations,
            "batch_size": self.batch_size,
            "progress": self.progress,
            "device": self.device,
        }


@dataclass(frozen=True, kw_only=True)
class HessianQuadraticConfig(ScorerConfig):
    """ΔᵀHΔ with the actual quantization errors.

    ``estimator``: ``exact`` (one product per operand and bit width), ``random_sign`` (``draws`` products per bit
    width over all operands at once, each operand's error times a random sign) or ``auto`` (exact when it needs
    at most ``exact_max_products`` products, else random signs). ``batch_draws``: products per batched second
    backward. ``grouping``: which operands share a random-sign product — all (``none``: ``draws`` products per bit
    width), those of one role across blocks (``role``: ``draws`` products per role and bit width, cross terms only
    between blocks) or ``auto`` (``role`` with ``draws`` // roles products per role when the model has at most
    ``draws`` roles, so the products stay ``draws`` per bit width; else ``none``). On the digits testbed role
    grouping ranked measured damage closer to the exact form than all-shared products at the same count, and the
    default 32 (2 per role on a ViT's 16 roles) stayed within 0.02 of the exact form's Spearman on six seeds where
    1 per role did not (bench/sensitivity.py part defaults).
    ``curvature``: the loss Hessian (``hessian``; a negative ΔᵀHΔ counts by its magnitude) or the generalized
    Gauss–Newton matrix Jᵀ(∂²L/∂z²)J (``gauss_newton``: PSD for cross-entropy, so no sign to fix; exact only).
    """

    estimator: Literal["auto", "exact", "random_sign"] = "auto"
    draws: int = 32
    grouping: Literal["auto", "role", "none"] = "auto"
    exact_max_products: int = AUTO_EXACT_MAX_PRODUCTS
    batch_draws: int = 8
    curvature: Literal["hessian", "gauss_newton"] = "hessian"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.estimator not in ("auto", "exact", "random_sign"):
            raise InputError(f"unknown quadratic-form estimator {self.estimator!r}; choose auto, exact or random_sign")
        if self.draws < 1:
            raise InputError(f"draws must be at least 1, got {self.draws}")
        if self.grouping not in ("auto", "role", "none"):
            raise InputError(f"unknown probe grouping {self.grouping!r}; choose auto, role or none")
        if self.batch_draws < 1:
            raise InputError(f"batch_draws must be at least 1, got {self.batch_draws}")
        if self.curvature not in ("hessian", "gauss_newton"):
            raise InputError(f"unknown curvature {self.curvature!r}; choose hessian or gauss_newton")

    def chosen(self, exact_products: int) -> Literal["exact", "random_sign"]:
        """The estimator run for a model whose exact form needs ``exact_products`` products."""
        if self.estimator != "auto":
            return self.estimator
        if self.curvature == "gauss_newton":
            return "exact"
        return "exact" if exact_products <= self.exact_max_products else "random_sign"


@dataclass(frozen=True, kw_only=True)
class HessianTraceConfig(ScorerConfig):
    """HAWQ-V2's Tr(H)/n·‖Δ‖² with Hutchinson traces: at most ``max_draws`` draws, ``batch_draws`` per batched
    second backward; stops when every estimate's relative standard error is at most ``rel_se`` (0: always
    ``max_draws``) after at least ``min_draws`` draws, a trace near zero (a layer whose score is small) counting
    as resolved once its per-element error is within ``rel_se × se_floor`` of the median layer's per-element
    trace (``hessian_traces``). ``probe``: ``krylov`` (per-layer probes after deflating each weight's Hessian
    block by a block Krylov basis of up to ``max_rank`` products, sized per weight for ``rel_se``: the most
    accurate per second on the depth-12 testbed, bench/sensitivity.py part pyhessian), ``deflated`` (the same
    after Hutch++'s random rank-``rank`` sketch), ``per_layer`` (a probe per tensor, no cross terms, each
    estimate stops on its own) or ``shared`` (one probe for all, as PyHessian's whole-model trace); see
    ``hessian_traces``."""

    max_draws: int = 200
    # 32, not 8: an estimate stopped on its own running standard error stops early when that error happens to be
    # low, and with 8 draws it often is (on the depth-12 testbed at 2.5 %, layers stopped at 16-23 draws sat 2-3.5
    # reported errors from a 3,000-draw plain estimate; with 32 the reported errors held, bench part pyhessian)
    min_draws: int = 32
    rel_se: float = 0.05
    probe: Literal["shared", "per_layer", "deflated", "krylov"] = "krylov"
    rank: int = 16
    max_rank: int = 512
    se_floor: float = 0.1
    batch_draws: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_draws < 1:
            raise InputError(f"max_draws must be at least 1, got {self.max_draws}")
        if self.min_draws < 2:
            raise InputError(f"min_draws must be at least 2 (a standard error needs two draws), got {self.min_draws}")
        if not (self.rel_se >= 0 and math.isfinite(self.rel_se)):
            raise InputError(f"rel_se must be a finite number >= 0, got {self.rel_se}")
        if self.batch_draws < 1:
            raise InputError(f"batch_draws must be at least 1, got {self.batch_draws}")
        if self.probe not in ("shared", "per_layer", "deflated", "krylov"):
            raise InputError(f"unknown probe {self.probe!r}; choose shared, per_layer, deflated or krylov")
        if self.max_rank < 0:
            raise InputError(f"max_rank must be at least 0, got {self.max_rank}")
        if not (self.se_floor >= 0 and math.isfinite(self.se_floor)):
            raise InputError(f"se_floor must be a finite number >= 0, got {self.se_floor}")
        if self.rank < 1:
            raise InputError(f"rank must be at least 1, got {self.rank}")


@dataclass(frozen=True, kw_only=True)
class FisherConfig(ScorerConfig):
    """Empirical-Fisher traces times ‖Δ‖²; ``normalize``: LampQ's type-aware scaling (``fisher_traces``)."""

    normalize: bool = True


Scorer = Callable[..., pd.DataFrame]
_SCORERS: dict[type[ScorerConfig], Scorer] = {}
C = TypeVar("C", bound=type[ScorerConfig])


def register_scorer(config_type: type[ScorerConfig]) -> Callable[[Scorer], Scorer]:
    """Decorator: ``fn(model, loss_fn, data, bit_pairs, config, calibration)`` scores configs of ``config_type``."""

    def decorate(fn: Scorer) -> Scorer:
        _SCORERS[config_type] = fn
        return fn

    return decorate


def registered_scorers() -> dict[type[ScorerConfig], Scorer]:
    """Config type → scorer function, for every registered scorer."""
    _load_builtin()
    return dict(_SCORERS)


def score(
    model: nn.Module,
    loss_fn: Callable[..., Any],
    data: Any,
    bit_pairs: Iterable[tuple[int, int]],
    config: ScorerConfig,
    *,
    calibration: Any = None,
) -> pd.DataFrame:
    """The ILP's sensitivity table for ``config``: one row per layer and (wbits, abits) pair with columns layer,
    wbits, abits, sensitivity, sensitivity_se (its standard error; 0 where exact), weight_sensitivity,
    act_sensitivity. ``frame.attrs["estimator"]`` names what was run (e.g. the size-chosen quadratic form)."""
    _load_builtin()
    for kind in type(config).__mro__:
        if kind in _SCORERS:
            return _SCORERS[kind](model, loss_fn, data, list(bit_pairs), config, calibration)
    known = ", ".join(sorted(k.__name__ for k in _SCORERS))
    raise InputError(f"no scorer is registered for {type(config).__name__}; registered: {known}")


def config_fields(config_type: type[ScorerConfig]) -> tuple[str, ...]:
    """The option names a config class takes."""
    return tuple(f.name for f in fields(config_type))


def _load_builtin() -> None:
    """The built-in scorers register when their module is imported."""
    import allocator.sensitivity.lampq  # TypeAwareFisherConfig
    import allocator.sensitivity.pmq  # PMQConfig
    import allocator.sensitivity.scores  # noqa: F401
