"""Bit plans: which bits (and quantizer kinds) each GEMM of a model gets, as a mapping written to JSON.

The JSON (what ``mixbit simulate --bits`` reads and ``mixbit allocate --out`` writes)::

    {"model": "deit_small_patch16_224", "default": {"wbits": 8, "abits": 8},        # default optional
     "layers": {"blocks.0.attn.qkv": {"wbits": 4, "abits": 8, "weight_kind": "uniform", "act_kind": "uniform"}}}

A patch-wise (token-split) layer adds ``"abits_low": 4, "token_fraction": 0.25, "token_score": "norm"``: the top
quarter of its input tokens at ``abits``, the rest at ``abits_low`` (``quant.tokens``; Linear GEMMs only).

For weight GEMMs ``wbits`` are the weight bits and ``abits`` the bits of the GEMM's input activation; for
attention matmuls (``<attn>.matmul_qk``, ``<attn>.matmul_av``) ``wbits`` are the bits of the second
operand (k or v) and ``abits`` of the first (q or the softmax probabilities).

Plan files are read in one place, ``sim.plan.read_plan`` (the file schema; quant and sim do not import each
other, so the allocator's ``read_bit_plan`` hands the validated mapping to ``BitPlan.from_dict``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from quant.errors import InputError
from quant.primitives import ACT_KINDS, check_bits
from quant.tokens import TOKEN_SCORES, check_fraction

__all__ = ["BitPlan", "LayerBits"]

_LAYER_KEYS = {"wbits", "abits", "weight_kind", "act_kind", "abits_low", "token_fraction", "token_score"}


@dataclass(frozen=True)
class LayerBits:
    """Bits of one GEMM: ``wbits`` (weights, or the second operand), ``abits`` (input, or first operand).

    Patch-wise (token-split) input, ``quant.tokens``: with ``abits_low`` and ``token_fraction`` both set, the top
    ``token_fraction`` of the input's tokens (by ``token_score``) are quantized at ``abits`` and the rest at
    ``abits_low`` (< ``abits``). Layer-wise when both are None.
    """

    wbits: int
    abits: int
    weight_kind: str = "uniform"
    act_kind: str = "uniform"
    abits_low: int | None = None
    token_fraction: float | None = None
    token_score: str = "norm"

    def __post_init__(self) -> None:
        check_bits(self.wbits, "wbits")
        check_bits(self.abits, "abits")
        if (self.abits_low is None) != (self.token_fraction is None):
            raise InputError("a token split needs both abits_low and token_fraction")
        if self.abits_low is not None:
            check_bits(self.abits_low, "abits_low")
            if self.abits_low >= self.abits:
                raise InputError(f"abits_low={self.abits_low} must be below abits={self.abits}")
            object.__setattr__(self, "token_fraction", check_fraction(self.token_fraction))  # type: ignore[arg-type]
        if self.token_score not in TOKEN_SCORES:
            raise InputError(f"token_score {self.token_score!r}; choose from {', '.join(TOKEN_SCORES)}")
        for name in ("weight_kind", "act_kind"):
            if getattr(self, name) not in ACT_KINDS:
                raise InputError(
                    f"{name}: unknown quantizer kind {getattr(self, name)!r}; choose from {', '.join(ACT_KINDS)}"
                )

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> LayerBits:
        if not isinstance(obj, Mapping):
            raise InputError(f"{where}: expected an object with wbits and abits, got {type(obj).__name__}")
        unknown = set(obj) - _LAYER_KEYS
        if unknown:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_LAYER_KEYS))}")
        for key in ("wbits", "abits"):
            if key not in obj:
                raise InputError(f"{where}: missing {key!r}")
        try:
            return cls(**obj)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    @property
    def token_split(self) -> bool:
        """Whether the input is split into a high-bit and a low-bit token group."""
        return self.abits_low is not None

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "wbits": self.wbits, "abits": self.abits, "weight_kind": self.weight_kind, "act_kind": self.act_kind
        }  # fmt: skip
        if self.token_split:
            obj.update(abits_low=self.abits_low, token_fraction=self.token_fraction, token_score=self.token_score)
        return obj


@dataclass(frozen=True)
class BitPlan:
    """A mapping from GEMM name to ``LayerBits``, with an optional ``default`` for unnamed layers."""

    model: str
    layers: Mapping[str, LayerBits] = field(default_factory=dict)
    default: LayerBits | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    @classmethod
    def uniform(cls, model: str, wbits: int, abits: int, act_kind: str = "uniform") -> BitPlan:
        """Every layer at (wbits, abits)."""
        return cls(model, {}, LayerBits(wbits, abits, act_kind=act_kind))

    def bits_for(self, name: str) -> LayerBits:
        """The bits of GEMM ``name``; ``InputError`` when the plan has neither it nor a default."""
        if name in self.layers:
            return self.layers[name]
        if self.default is None:
            raise InputError(f"bit plan for {self.model!r}: layer {name!r} is missing and the plan has no default")
        return self.default

    def check_layers(self, names: Iterable[str]) -> None:
        """Raise ``InputError`` if the plan names a layer not in ``names`` or misses one without default."""
        names = list(names)
        known = set(names)
        for name in self.layers:
            if name not in known:
                raise InputError(f"bit plan for {self.model!r}: layer {name!r} is not a GEMM of the model")
        for name in names:
            self.bits_for(name)

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.model}
        if self.default is not None:
            obj["default"] = self.default.to_dict()
        obj["layers"] = {name: bits.to_dict() for name, bits in self.layers.items()}
        return obj

    @classmethod
    def from_dict(cls, obj: Any, where: str = "bit plan") -> BitPlan:
        if not isinstance(obj, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - {"model", "default", "layers"}
        if unknown:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: model, default, layers")
        model = obj.get("model", "")
        if not isinstance(model, str):
            raise InputError(f"{where}: 'model' must be a string")
        layers = obj.get("layers", {})
        if not isinstance(layers, Mapping):
            raise InputError(f"{where}: 'layers' must be an object mapping layer names to bits")
        default = obj.get("default")
        return cls(
            model,
            {name: LayerBits.from_dict(bits, f"{where}: layers.{name}") for name, bits in layers.items()},
            None if default is None else LayerBits.from_dict(default, f"{where}: default"),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
