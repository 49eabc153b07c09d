"""Export a quantized, calibrated ViT for a hardware flow, and check each export against what it claims.

Formats (``FORMATS``):

- ``qonnx``: the fake-quant model as a QONNX graph (``Quant`` nodes at every quantization point), read by
  FINN, hls4ml and the ``qonnx`` package (``quant.exports.qonnx``).
- ``onnx-int``: the integer-only model as a standard ONNX graph of integer operators; onnxruntime runs it
  and it equals ``quant.integer.IntegerModel`` element by element (``quant.exports.onnx_int``).
- ``npz``: integer weights, biases, dyadic factors and quantizer parameters per layer (``model.npz``) with a
  JSON manifest of the layers in graph order (``manifest.json``; ``quant.exports.npz`` documents it).

``export(model, fmt, path)`` writes one format (atomically: a temporary file or folder renamed into place);
``check_onnx_int``, ``check_qonnx`` and ``qonnx_cost`` run the checks (``quant.exports.check``).
``quant.export`` is this package's ``export``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from quant.errors import InputError

__all__ = ["FORMATS", "ExportResult", "check_onnx_int", "check_qonnx", "export", "export_unsupported", "qonnx_cost"]

FORMATS: tuple[str, ...] = ("qonnx", "onnx-int", "npz")
SUFFIX = {"qonnx": ".qonnx.onnx", "onnx-int": ".int.onnx", "npz": ""}
"""File name endings ``mixbit allocate --export`` gives each format beside plan.json (npz: a folder)."""


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: ``files`` (path -> bytes), the time it took (s) and details per format."""

    format: str
    path: str
    files: dict[str, int]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            **self.details,
        }


def _image_shape(model: nn.Module) -> tuple[int, int, int]:
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if proj is None or size is None:
        raise InputError(f"export: {type(model).__name__} is not a timm VisionTransformer (no patch_embed)")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(proj.in_channels), int(height), int(width)


def export_unsupported(model: nn.Module) -> str | None:
    """Why ``model`` (float or quantized) cannot be exported, or None. The exports cover timm ViT/DeiT: a Swin
    has an integer-only model (``quant.integer_swin``, checked by ``mixbit verify``) but no export format yet."""
    if type(model).__name__ == "SwinTransformer":
        return (
            "SwinTransformer cannot be exported yet: the export formats cover timm ViT/DeiT only "
            "(Swin's integer-only model is checked by mixbit verify / allocate --verify)"
        )
    return None


def check_format(fmt: str) -> str:
    """``fmt`` if it is a known format, else ``InputError`` listing them."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    return fmt


def _writable_parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {path}: folder {parent} is not writable")
    return parent


def export(
    model: nn.Module,
    fmt: str,
    path: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    widths: Any = None,
) -> ExportResult:
    """Write ``model`` (quantized and calibrated) in format ``fmt`` to ``path``.

    ``qonnx`` and ``onnx-int`` write one ``.onnx`` file; ``npz`` writes a folder with ``model.npz`` and
    ``manifest.json``. Nothing is left half-written: the output is built beside ``path`` and renamed into
    place. ``widths``: ``quant.integer.Widths`` for the integer formats (default 32-bit accumulators and
    activations). Raises ``InputError`` for an unknown format, a quantizer kind the format cannot express,
    or an output path that cannot be written.
    """
    import onnx

    from quant.integer import to_integer

    check_format(fmt)
    unsupported = export_unsupported(model)
    if unsupported:
        raise InputError(f"export: {unsupported}")
    split = next((n for n, m in model.named_modules() if getattr(m, "token_split", None) is not None), None)
    if split is not None:  # the formats have no per-token bit groups yet; an export would drop them silently
        raise InputError(f"export: {split} is token-split (patch-wise bits); no export format carries token groups yet")
    path = Path(path)
    parent = _writable_parent(path)
    if path.exists() and (fmt == "npz") != path.is_dir():
        kind = "a file" if path.is_file() else "a folder"
        raise InputError(f"--out {path}: exists and is {kind}; {fmt} writes {'a folder' if fmt == 'npz' else 'a file'}")
    name = model_name or type(model).__name__
    image_shape = _image_shape(model)
    began = time.perf_counter()
    details: dict[str, Any] = {}
    if fmt == "qonnx":
        from quant.exports.qonnx import qonnx_model

        proto = qonnx_model(model, image_shape, name=name)
        details["nodes"] = len(proto.graph.node)
        details["quant_nodes"] = sum(node.op_type == "Quant" for node in proto.graph.node)
    elif fmt == "onnx-int":
        from quant.exports.onnx_int import onnx_int_model

        proto = onnx_int_model(to_integer(model, widths), image_shape, name=name)
        details["nodes"] = len(proto.graph.node)
        details["outputs"] = len(proto.graph.output)
    else:
        from quant.exports.npz import npz_arrays

        integer = to_integer(model, widths)
        arrays, manifest = npz_arrays(integer, name, image_shape, integer.widths.to_json())
        details["layers"] = len(manifest["layers"])
        details["arrays"] = len(arrays)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        if fmt == "npz":
            import numpy as np

            np.savez_compressed(staging / "model.npz", **arrays)
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
            files = {str(path / f.name): f.stat().st_size for f in sorted(path.iterdir())}
        else:
            onnx.save(proto, staging / "model.onnx")
            os.replace(staging / "model.onnx", path)
            files = {str(path): path.stat().st_size}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(fmt, str(path), files, time.perf_counter() - began, details)


def __getattr__(name: str) -> Any:
    if name in ("check_onnx_int", "check_qonnx", "qonnx_cost"):
        from quant.exports import check

        return getattr(check, name)
    raise AttributeError(f"module 'quant.exports' has no attribute {name!r}")
