"""Which layers' bits are not resolved by the scores: the plan would change within the scores' error bars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from allocator.ilp.model import Allocation, Limits, allocate
from sim.errors import InputError

__all__ = ["Flip", "unresolved_layers"]


@dataclass(frozen=True)
class Flip:
    """A layer whose chosen bits change when its scores move by ``z`` standard errors against the choice:
    ``chosen`` (wbits, abits) becomes ``flipped``."""

    layer: str
    chosen: tuple[int, int]
    flipped: tuple[int, int]

    def to_json(self) -> dict[str, object]:
        return {"layer": self.layer, "chosen": list(self.chosen), "flipped": list(self.flipped)}


def unresolved_layers(
    allocation: Allocation,
    standard_errors: pd.DataFrame | Mapping[tuple[str, int, int], float],
    *,
    z: float = 2.0,
    limits: Limits | None = None,
) -> tuple[Flip, ...]:
    """The layers whose bits flip within the error bars of their scores.

    For each layer with a non-zero standard error, one re-solve under the same limits with that layer's
    chosen option made ``z`` standard errors worse and each of its other options ``z`` standard errors better
    (Ω floored at 0); the layer is unresolved when its choice changes. ``standard_errors``: a table with
    columns layer, wbits, abits, sensitivity_se, or a mapping (layer, wbits, abits) → standard error.
    Exact scores (all errors 0) leave nothing unresolved.
    """
    allocation.check()
    if not (z >= 0 and np.isfinite(z)):
        raise InputError(f"z must be a finite number >= 0, got {z}")
    if isinstance(standard_errors, pd.DataFrame):
        missing = {"layer", "wbits", "abits", "sensitivity_se"} - set(standard_errors.columns)
        if missing:
            raise InputError(f"standard errors table is missing column(s) {', '.join(sorted(missing))}")
        se = {
            (str(r.layer), int(r.wbits), int(r.abits)): float(r.sensitivity_se)
            for r in standard_errors.itertuples(index=False)
        }
    else:
        se = {(str(k[0]), int(k[1]), int(k[2])): float(v) for k, v in standard_errors.items()}
    problem = allocation.problem
    limits = allocation.limits if limits is None else limits
    frame = problem.to_frame()
    keys = list(zip(frame["layer"], frame["wbits"].astype(int), frame["abits"].astype(int), strict=True))
    margins = np.array([se.get(key, 0.0) for key in keys]) * z
    chosen = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    flips: list[Flip] = []
    for layer in problem.layers:
        rows = frame["layer"].to_numpy() == layer
        if not np.any(margins[rows] > 0):
            continue
        pick = np.array([key[0] == layer and key[1:] == chosen[layer] for key in keys])
        shifted = frame["sensitivity"].to_numpy(dtype=float).copy()
        shifted[pick] += margins[pick]
        others = rows & ~pick
        shifted[others] = np.maximum(shifted[others] - margins[others], 0.0)
        moved = frame.copy()
        moved["sensitivity"] = shifted
        again = allocate(problem.with_sensitivity(moved), limits)
        if not again.ok:
            continue
        now = {c.layer: (c.wbits, c.abits) for c in again.chosen}
        if now[layer] != chosen[layer]:
            flips.append(Flip(layer, chosen[layer], now[layer]))
    return tuple(flips)
