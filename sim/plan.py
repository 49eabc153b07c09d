"""Read the bit-plan JSON that ``mixbit allocate --out`` writes; sim reads only wbits and abits.

Format: ``{"model": NAME, "default": {"wbits": 8, "abits": 8}, "layers": {NAME: {"wbits": 4, "abits": 8,
...}, ...}}``; ``default`` is optional and other keys of a layer (weight_kind, act_kind) are ignored here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sim.errors import InputError

__all__ = ["load_bits", "plan_bits"]


def _bits_of(entry: Any, where: str) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with wbits and abits, got {entry!r}")
    pair = []
    for key in ("wbits", "abits"):
        if key not in entry:
            raise InputError(f"{where}: missing {key!r}")
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{where}: {key}={value!r}; must be a positive integer")
        pair.append(value)
    return pair[0], pair[1]


def load_bits(path: str | Path) -> tuple[dict[str, tuple[int, int]], tuple[int, int] | None, str | None]:
    """(per-layer (wbits, abits), default pair or None, model name or None) from a bit-plan JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a bit plan must be a JSON object")
    layers = data.get("layers", {})
    if not isinstance(layers, dict):
        raise InputError(f"{path}: 'layers' must be an object mapping layer names to bits")
    default = _bits_of(data["default"], f"{path}: default") if "default" in data else None
    bits = {name: _bits_of(entry, f"{path}: layer {name!r}") for name, entry in layers.items()}
    model = data.get("model")
    return bits, default, model if isinstance(model, str) else None


def plan_bits(path: str | Path, layer_names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(wbits, abits) for each of ``layer_names`` from the plan at ``path``.

    A layer named in the plan but absent from ``layer_names`` is an error, and so is a missing layer when the
    plan has no ``default``.
    """
    bits, default, _ = load_bits(path)
    names = list(layer_names)
    unknown = sorted(set(bits) - set(names))
    if unknown:
        raise InputError(f"{path}: layer {unknown[0]!r} is not in the model")
    out = {}
    for name in names:
        if name in bits:
            out[name] = bits[name]
        elif default is not None:
            out[name] = default
        else:
            raise InputError(f"{path}: no bits for layer {name!r} and no 'default'")
    return out
