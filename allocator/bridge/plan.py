"""The one bit-plan reader for ``verify``, ``allocate`` and export: sim's file schema, then quant's ``BitPlan``.

``sim.plan.read_plan`` checks the file (JSON, keys, types, bit ranges); ``quant.BitPlan.from_dict`` checks
what quant owns (quantizer kinds). Errors from either name the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from quant.errors import InputError as QuantInputError
from quant.plan import BitPlan
from sim.errors import InputError
from sim.plan import read_plan

__all__ = ["read_bit_plan"]


def read_bit_plan(path: str | Path) -> BitPlan:
    """The validated ``quant.BitPlan`` in the plan file at ``path``; ``InputError`` ``PATH: key: reason``."""
    path = Path(path)
    data = read_plan(path).to_dict()
    try:
        return BitPlan.from_dict(data, where=str(path))
    except QuantInputError as exc:
        raise InputError(str(exc)) from None
