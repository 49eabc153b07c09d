"""Import timm safely where torchvision's compiled ops cannot load.

On CPU-only machines the registry's torchvision wheel is a CUDA build whose C++ ops do not load against a
CPU torch, and torchvision's Python side then fails on import because ``torchvision::nms`` is unknown.
mixbit never calls those ops; defining their schemas (no kernels) lets torchvision, and so timm, import.
Where torchvision's ops do load (a matching CUDA or CPU build), this changes nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType

import torch

__all__ = ["import_timm"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def _define_missing_torchvision_ops() -> None:
    global _library
    try:
        import torchvision  # noqa: F401

        return
    except (RuntimeError, OSError, ImportError):
        pass
    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            with contextlib.suppress(RuntimeError):  # already defined by a partial torchvision load
                _library.define(schema)
    # a failed import leaves half-initialised torchvision modules behind; drop them so the next import is clean
    for mod in [m for m in list(sys.modules) if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]


def import_timm() -> ModuleType:
    """Return the ``timm`` module, after making sure torchvision imports."""
    _define_missing_torchvision_ops()
    return importlib.import_module("timm")
