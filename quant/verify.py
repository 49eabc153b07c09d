"""The integer model checked against the fake-quant model's exact mode, every quantization point element by element.

Above both ``quant.integer`` (the integer model) and ``quant.exact`` (the exact mode), so neither imports the
other's caller: integer → modules → primitives, exact → integer, verify → exact.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from quant.errors import InputError
from quant.exact import recording, set_exact_
from quant.integer import ACT_FRAC_BITS, IntegerModel, to_integer

__all__ = ["Mismatch", "VerifyReport", "exact_codes", "verify_bit_exact"]


@dataclass(frozen=True)
class Mismatch:
    """The first element where the integer model and the exact mode differ."""

    tensor: str
    index: tuple[int, ...]
    integer: int | None
    exact: int | None

    def to_json(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "index": list(self.index), "integer": self.integer, "exact": self.exact}


@dataclass(frozen=True)
class VerifyReport:
    """Integer model vs the fake-quant model's exact mode, every quantization point element by element.

    ``points``: quantization points compared (each quantizer's codes, plus the logits); ``checked``:
    elements compared; ``mismatches``: elements that differ (a point one side lacks counts all its
    elements); ``first``: the first mismatch in forward order; ``per_point``: (name, elements, mismatches).
    """

    images: int
    points: int
    checked: int
    mismatches: int
    first: Mismatch | None
    per_point: tuple[tuple[str, int, int], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def to_json(self) -> dict[str, Any]:
        """The contract's verify object {"checked", "mismatches"} plus details."""
        return {
            "checked": self.checked,
            "mismatches": self.mismatches,
            "points": self.points,
            "images": self.images,
            "first_mismatch": self.first.to_json() if self.first else None,
            "mismatched_points": [name for name, _, bad in self.per_point if bad],
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.per_point), columns=["point", "elements", "mismatches"])


def exact_codes(model: nn.Module, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Run ``model`` in exact mode on ``images``; (codes by quantizer name, logits as float64)."""
    names = {id(module): name for name, module in model.named_modules()}
    codes: dict[str, Tensor] = {}

    def keep(quantizer: Any, value: Tensor) -> None:
        codes[names.get(id(quantizer), repr(quantizer))] = value

    was_exact = [module for module in model.modules() if getattr(module, "exact", False)]
    set_exact_(model, True)
    try:
        with recording(keep), torch.no_grad():
            logits = model(images)
    finally:
        set_exact_(model, False)
        for module in was_exact:
            set_exact_(module, True, recurse=False)
    return codes, logits


def verify_bit_exact(
    model: nn.Module,
    inputs: Tensor,
    integer_model: IntegerModel | None = None,
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Compare the integer model with ``model``'s exact mode on ``inputs`` (float images, N×C×H×W).

    Every quantizer's codes and the logits (exact logits·2^16 vs the integer logits) are compared element
    by element; the model is left in the mode it was in. ``batch_size``: images compared at a time (None: all at
    once). Both models keep every quantization point's codes of the images in flight (int64), so the batch bounds
    memory. ``first`` is then the first mismatch of the first batch
    that has one, in forward order. ``progress``: a tqdm bar (with an ETA) over the images on stderr.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 4 or inputs.shape[0] == 0:
        raise InputError(
            f"verify inputs: expected a non-empty image batch (N, C, H, W), got {getattr(inputs, 'shape', inputs)}"
        )
    if batch_size is not None and batch_size < 1:
        raise InputError(f"verify: batch_size must be at least 1, got {batch_size}")
    integer_model = integer_model or to_integer(model)
    count = int(inputs.shape[0])
    size = count if batch_size is None else batch_size
    totals: dict[str, list[int]] = {}  # point -> [elements, mismatches], in the first batch's order
    first: Mismatch | None = None
    with tqdm(total=count, desc="verifying", unit="image", disable=not progress, file=sys.stderr) as bar:
        for begin in range(0, count, size):
            images = inputs[begin : begin + size]
            per_point, found = _compare(model, integer_model, images)
            for name, elements, bad in per_point:
                slot = totals.setdefault(name, [0, 0])
                slot[0] += elements
                slot[1] += bad
            if first is None and found is not None:
                index = found.index
                if index and index[0] < len(images):  # codes are image-major: name the image in ``inputs``
                    index = (index[0] + begin, *index[1:])
                first = Mismatch(found.tensor, index, found.integer, found.exact)
            bar.update(len(images))
    per_point_all = tuple((name, elements, bad) for name, (elements, bad) in totals.items())
    checked = sum(elements for _, elements, _ in per_point_all)
    mismatches = sum(bad for _, _, bad in per_point_all)
    return VerifyReport(count, len(per_point_all), checked, mismatches, first, per_point_all)


def _compare(
    model: nn.Module, integer_model: IntegerModel, inputs: Tensor
) -> tuple[list[tuple[str, int, int]], Mismatch | None]:
    """(name, elements, mismatches) of every quantization point on ``inputs``, and the first mismatch."""
    integer_run = integer_model.run(inputs)
    exact, logits = exact_codes(model, inputs)
    exact["logits"] = torch.floor(logits.to(torch.float64) * 2.0**ACT_FRAC_BITS + 0.5).to(torch.int64)
    names = list(integer_run.codes) + [name for name in exact if name not in integer_run.codes]
    per_point = []
    first: Mismatch | None = None
    for name in names:
        ours, theirs = integer_run.codes.get(name), exact.get(name)
        if ours is None or theirs is None or ours.shape != theirs.shape:
            present = ours if ours is not None else theirs
            size = int(present.numel()) if present is not None else 0
            per_point.append((name, size, size))
            if first is None:
                first = Mismatch(name, (), None if ours is None else -1, None if theirs is None else -1)
            continue
        differ = ours != theirs
        bad = int(differ.sum())
        per_point.append((name, int(ours.numel()), bad))
        if bad and first is None:
            index = tuple(int(i) for i in differ.nonzero()[0])
            first = Mismatch(name, index, int(ours[index]), int(theirs[index]))
    return per_point, first
