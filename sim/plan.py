"""Bit-plan files: the one reader of the JSON that ``mixbit allocate --out`` writes and every command reads.

Format::

    {"model": NAME, "note": "free text",                      # both optional
     "default": {"wbits": 8, "abits": 8},                     # optional: bits of layers not named below
     "layers": {NAME: {"wbits": 4, "abits": 8, "weight_kind": "uniform", "act_kind": "log2",
                       "dataflow": "ws"}, ...}}                # dataflow: optional, per-layer-dataflow arrays

A patch-wise layer adds ``"abits_low": 4, "token_fraction": 0.25`` (and optionally ``"token_score": "norm"``,
quant's token scoring): the top quarter of its tokens at ``abits``, the rest at ``abits_low`` (sim/patchwise.py).

A plan is plain data, so its schema lives here in sim (which needs only ``wbits``/``abits``) and quant takes
the validated mapping (``quant.BitPlan.from_dict``), which checks the quantizer kinds it owns: sim and quant
stay independent and there is one reader. ``allocator.bridge.read_bit_plan`` joins the two for ``verify``,
``allocate`` and export; ``simulate`` uses ``plan_bits`` here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from sim.errors import InputError
from sim.patchwise import TokenSplit
from sim.schema import FileModel, keyed_error, read_json, validate
from sim.target import Dataflow

__all__ = ["LayerEntry", "PlanFile", "load_bits", "plan_bits", "plan_dataflows", "plan_token_splits", "read_plan"]

#: Bit widths a plan may name (quantizers are defined for 2..8 bits; a target may support fewer).
MIN_PLAN_BITS, MAX_PLAN_BITS = 2, 8

Bits = Annotated[int, Field(ge=MIN_PLAN_BITS, le=MAX_PLAN_BITS)]
#: A quantizer kind (``uniform``, ``log2``, ...); quant owns the list and checks it.
Kind = Annotated[str, Field(min_length=1, max_length=64)]


class LayerEntry(FileModel):
    """Bits of one GEMM: ``wbits`` (weights, or the second operand), ``abits`` (input, or the first operand)."""

    wbits: Bits
    abits: Bits
    weight_kind: Kind = "uniform"
    act_kind: Kind = "uniform"
    abits_low: Bits | None = None
    token_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    token_score: Kind | None = None
    dataflow: Dataflow | None = None  # the layer's dataflow on an array that switches per layer (hardware only)

    @model_validator(mode="after")
    def _split_is_whole(self) -> LayerEntry:
        if (self.abits_low is None) != (self.token_fraction is None):
            raise keyed_error("abits_low", "a token split needs both abits_low and token_fraction")
        if self.abits_low is not None and self.abits_low >= self.abits:
            raise keyed_error("abits_low", f"{self.abits_low} must be below abits ({self.abits})")
        return self


class PlanFile(FileModel):
    """A whole bit-plan file."""

    model: str = ""
    note: str = ""
    default: LayerEntry | None = None
    layers: dict[str, LayerEntry] = Field(default_factory=dict)

    def to_dict(self) -> dict:
        """The plan as JSON-ready data for quant, with the quantizer kinds filled in (dataflows are sim's)."""
        data = self.model_dump(exclude={"note"}, exclude_none=True)
        for entry in [data.get("default") or {}, *data.get("layers", {}).values()]:
            entry.pop("dataflow", None)
        return data


def read_plan(path: str | Path) -> PlanFile:
    """The validated plan at ``path``; ``InputError`` ``PATH: key: reason`` on any problem with the file."""
    path = Path(path)
    return validate(PlanFile, read_json(path, "bit plan"), path)


def load_bits(path: str | Path) -> tuple[dict[str, tuple[int, int]], tuple[int, int] | None, str | None]:
    """(per-layer (wbits, abits), default pair or None, model name or None) from a bit-plan JSON file."""
    plan = read_plan(path)
    bits = {name: (entry.wbits, entry.abits) for name, entry in plan.layers.items()}
    default = None if plan.default is None else (plan.default.wbits, plan.default.abits)
    return bits, default, plan.model or None


def plan_bits(path: str | Path, layer_names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(wbits, abits) for each of ``layer_names`` from the plan at ``path``.

    A layer named in the plan but absent from ``layer_names`` is an error, and so is a missing layer when the
    plan has no ``default``.
    """
    bits, default, _ = load_bits(path)
    names = list(layer_names)
    unknown = sorted(set(bits) - set(names))
    if unknown:
        raise InputError(f"{path}: layers.{unknown[0]}: not a GEMM of the model")
    out = {}
    for name in names:
        if name in bits:
            out[name] = bits[name]
        elif default is not None:
            out[name] = default
        else:
            raise InputError(f"{path}: layers.{name}: missing, and the plan has no 'default'")
    return out


def plan_dataflows(path: str | Path) -> dict[str, str]:
    """The per-layer dataflows the plan at ``path`` names (empty for a plan of a fixed-dataflow array)."""
    plan = read_plan(path)
    return {name: entry.dataflow for name, entry in plan.layers.items() if entry.dataflow is not None}


def plan_token_splits(path: str | Path, layer_names: Iterable[str]) -> dict[str, TokenSplit]:
    """The patch-wise layers of the plan at ``path`` (``abits_low`` and ``token_fraction``), by name; layers the
    plan leaves to its ``default`` take the default's split. ``plan_bits`` checks the names."""
    plan = read_plan(path)
    out = {}
    for name in layer_names:
        entry = plan.layers.get(name, plan.default)
        if entry is not None and entry.abits_low is not None:
            out[name] = TokenSplit(entry.abits_low, float(entry.token_fraction))  # type: ignore[arg-type]
    return out
