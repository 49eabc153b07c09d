"""The user's weights: one loader for every command (allocate, verify, train, export).

Accepted files:
- torch ``.pt``/``.pth``: a bare state dict, or one wrapped as ``{"state_dict": ...}``, ``{"model": ...}``,
  ``{"model_state_dict": ...}`` or ``{"module": ...}`` (what timm's and common training scripts write); a
  ``module.`` prefix left by DistributedDataParallel is dropped. Read with ``weights_only=True``: a checkpoint
  cannot run code.
- ``.safetensors`` (the ``safetensors`` package; Hugging Face and timm's format).
- ``mixbit train`` checkpoints: ``{"model": NAME, "state_dict": ..., "model_kwargs": {...}, "classes": [...],
  "data_config": {...}}``. Their recorded keyword arguments (image size, classes, channels) rebuild the model.

``num_classes`` comes from the classifier's weight shape and ``in_chans`` from the patch embedding's, so a
timm fine-tune loads without the user restating them. A checkpoint for another architecture is refused with
the first missing and unexpected keys (and the first shape that differs), before any other work is done.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from quant.errors import InputError

__all__ = [
    "Checkpoint",
    "Weights",
    "fit_head_",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "remove_stale_temporaries",
    "save_checkpoint",
]

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net")
_DDP_PREFIX = "module."
# where the number of input channels shows in a state dict (timm ViT/DeiT/Swin patch embedding, ResNet stem)
_STEM_KEYS = ("patch_embed.proj.weight", "conv1.weight", "stem.conv.weight", "stem.0.weight")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read from disk: the weights plus what ``mixbit train`` recorded beside them.

    ``model_kwargs``: keyword arguments the model was built with (``img_size``, ``num_classes``, ``in_chans``);
    ``classes``: class names in label order, when recorded; ``data_config``: the preprocessing it was trained
    with (timm's data-config keys: ``input_size``, ``interpolation``, ``crop_pct``, ``mean``, ``std``, ...).
    """

    path: Path
    state_dict: dict[str, Tensor]
    model_name: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    data_config: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _is_state_dict(obj: object) -> bool:
    """Tensors by name: a non-empty mapping of ``str`` keys to tensors (a key of another type is no parameter name)."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict inside ``obj`` and the other top-level entries (metadata)."""
    if _is_state_dict(obj):
        return dict(obj), {}  # type: ignore[call-overload]
    if isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), {k: v for k, v in obj.items() if k != key}
    kind = type(obj).__name__
    keys = f" with keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, Mapping) else ""
    raise InputError(
        f"checkpoint {path}: no state dict in it (a {kind}{keys}; expected tensors by name, or one under "
        f"{', '.join(repr(k) for k in _WRAPPERS)})"
    )


def _strip_ddp(state: dict[str, Tensor]) -> dict[str, Tensor]:
    if state and all(k.startswith(_DDP_PREFIX) for k in state):
        return {k[len(_DDP_PREFIX) :]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` (torch or safetensors) into a :class:`Checkpoint`; ``InputError`` naming the file and the
    reason when it is missing, unreadable, corrupted, not a checkpoint, or holds no state dict."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"--checkpoint {path}: no such file")
    if not path.is_file():
        raise InputError(f"--checkpoint {path}: not a file")
    if path.suffix.lower() == ".safetensors":
        obj, meta = _read_safetensors(path)
    else:
        obj, meta = _read_torch(path), {}
    state, extra = _unwrap(obj, path)
    meta = {**meta, **extra}
    state = _strip_ddp(state)
    model = meta.get("model")
    classes = meta.get("classes")
    kwargs = meta.get("model_kwargs")
    data_config = meta.get("data_config")
    return Checkpoint(
        path=path,
        state_dict=state,
        model_name=model if isinstance(model, str) else None,
        model_kwargs=dict(kwargs) if isinstance(kwargs, Mapping) else {},
        classes=tuple(str(c) for c in classes) if isinstance(classes, (list, tuple)) else None,
        data_config=dict(data_config) if isinstance(data_config, Mapping) else None,
        meta={k: v for k, v in meta.items() if k not in ("model", "classes", "model_kwargs", "data_config")},
    )


def _reason(exc: BaseException) -> str:
    """The informative part of a loader's message: torch's weights-only refusal names the offending line after
    a paragraph of advice; other messages are cut at their first sentence."""
    text = str(exc)
    for line in text.splitlines():
        if line.strip().startswith("WeightsUnpickler error:"):
            return line.strip().removeprefix("WeightsUnpickler error:").strip()[:160]
    first = text.splitlines()[0] if text else type(exc).__name__
    cut = first.find(". ")
    first = first[:cut] if cut > 0 else first
    if first.strip().isdigit():  # zipfile/pickle report a bare byte value for text files
        first = f"{type(exc).__name__} {first}"
    return first[:160]


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"checkpoint {path}: not a torch checkpoint of plain tensors (weights-only load refused: {_reason(exc)})"
        ) from None
    except Exception as exc:
        raise InputError(f"checkpoint {path}: corrupted or not a torch checkpoint ({_reason(exc)})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    import json

    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
            raw_meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"checkpoint {path}: corrupted or not a safetensors file ({_reason(exc)})") from None
    # safetensors metadata is str -> str; mixbit stores its JSON-encoded facts there
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    return state, meta


def _classifier_key(model_name: str) -> str | None:
    """The state-dict prefix of the model's classifier (``head``, ``head.fc``, ...), from timm's config."""
    from quant.models import is_testbed

    if is_testbed(model_name):
        return "head"
    from quant._torch import import_timm

    import_timm()
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    return getattr(cfg, "classifier", None) if cfg is not None else None


def inferred_kwargs(model_name: str, checkpoint: Checkpoint) -> dict[str, Any]:
    """Model keyword arguments the weights imply: recorded ones first, then ``num_classes`` from the classifier
    weight's rows and ``in_chans`` from the stem's input channels."""
    kwargs = dict(checkpoint.model_kwargs)
    state = checkpoint.state_dict
    head = _classifier_key(model_name)
    if head and "num_classes" not in kwargs:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            kwargs["num_classes"] = int(weight.shape[0])
        elif f"{head}.weight" not in state and any(k.startswith("head") or k.startswith("fc.") for k in state):
            pass  # another architecture: the key comparison names it
        elif not any(k.startswith(f"{head}.") for k in state):
            kwargs["num_classes"] = 0  # saved without a classifier (a feature extractor)
    if "in_chans" not in kwargs:
        for key in _STEM_KEYS:
            weight = state.get(key)
            if weight is not None and weight.ndim == 4:
                kwargs["in_chans"] = int(weight.shape[1])
                break
    return kwargs


def _first(keys: list[str]) -> str:
    return f"{keys[0]!r}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor], where: str, model_name: str) -> None:
    """``InputError`` naming the first missing key, the first unexpected key and the first shape that differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected {_first(unexpected)}")
        raise InputError(f"checkpoint {where}: not weights for {model_name}: {'; '.join(parts)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            hint = " (trained at another image size? pass --img-size)" if "pos_embed" in key else ""
            raise InputError(
                f"checkpoint {where}: {key} has shape {tuple(state[key].shape)}, {model_name} expects "
                f"{tuple(value.shape)}{hint}"
            )


def load_checkpoint(model_name: str, path: str | Path, **overrides: Any) -> tuple[nn.Module, Checkpoint]:
    """Build ``model_name`` with the keyword arguments the checkpoint implies (``overrides`` win) and load its
    weights; returns (model in eval mode with unfused attention, checkpoint).

    ``InputError`` (CLI exit status 2) when the file cannot be read, was saved for another model name by
    ``mixbit train``, or its keys or shapes are not ``model_name``'s.
    """
    from quant.models import create_model

    checkpoint = read_checkpoint(path)
    if checkpoint.model_name is not None and checkpoint.model_name != model_name:
        raise InputError(f"checkpoint {checkpoint.path}: saved for model {checkpoint.model_name!r}, not {model_name!r}")
    kwargs = {**inferred_kwargs(model_name, checkpoint), **overrides}
    try:
        model = create_model(model_name, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        if isinstance(exc, InputError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"checkpoint {checkpoint.path}: cannot build {model_name} with {kwargs}: {reason[:200]}"
        ) from None
    check_state_dict(model, checkpoint.state_dict, str(checkpoint.path), model_name)
    model.load_state_dict(checkpoint.state_dict)
    return model.eval(), checkpoint


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` (``.<name>.<pid>.<random>.tmp`` beside it) whose writer process is gone,
    as a kill -9 mid-write leaves them; returns them. A live writer's temporary (another pid) is left alone."""
    import os

    prefix = f".{path.name}."
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return []
    removed = []
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid_text = entry[len(prefix) : -len(".tmp")].split(".")[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        stale = path.parent / entry
        try:
            stale.unlink()
        except OSError:
            continue
        removed.append(stale)
    return removed


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no pid can be
        return False
    except PermissionError:  # another user's process
        return True
    return True


def save_checkpoint(
    path: str | Path,
    model_name: str,
    model: nn.Module,
    *,
    model_kwargs: Mapping[str, Any],
    classes: tuple[str, ...] | list[str] | None = None,
    data_config: Mapping[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Write a checkpoint ``load_checkpoint`` reads back into the same model, atomically: to a temporary file
    beside ``path``, flushed to disk, then renamed over it — a full disk or a crash leaves any previous
    checkpoint at ``path`` intact, and the next write removes a dead writer's temporary (see
    ``remove_stale_temporaries``). ``.safetensors`` paths are written with safetensors, others with torch."""
    import json
    import os
    import tempfile

    path = Path(path)
    if path.exists() and path.is_dir():
        raise InputError(f"--out {path}: is a folder; give a checkpoint file name (.pt or .safetensors)")
    path.parent.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {"model": model_name, "model_kwargs": dict(model_kwargs), **meta}
    if classes is not None:
        facts["classes"] = list(classes)
    if data_config is not None:
        facts["data_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    remove_stale_temporaries(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as fh:
            if path.suffix.lower() == ".safetensors":
                from safetensors.torch import save

                fh.write(save(state, metadata={k: json.dumps(v) for k, v in facts.items()}))
            else:
                torch.save({**facts, "state_dict": state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = " (the previous checkpoint there is untouched)" if path.exists() else ""
        raise InputError(f"--out {path}: cannot write the checkpoint: {exc.strerror or exc}{kept}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Weights:
    """Where a model's weights came from and what they were trained on.

    ``source``: the checkpoint path, or ``"random"``; ``classes``: class names in label order when recorded;
    ``num_outputs``: the classifier's width when the weights fix it (None for random weights, whose head is
    resized to the data); ``data_config``: the preprocessing recorded with them; ``model_kwargs``: the keyword
    arguments the model was built with (recorded, inferred from the weights, or overridden)."""

    source: str
    classes: tuple[str, ...] | None = None
    num_outputs: int | None = None
    data_config: dict[str, Any] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def random(self) -> bool:
        return self.source == "random"

    def label(self, model_name: str) -> str:
        return f"{model_name} with random weights" if self.random else f"checkpoint {self.source}"


def load_model(
    model_name: str, checkpoint: str | Path | None = None, *, seed: int = 0, **overrides: Any
) -> tuple[nn.Module, Weights]:
    """The float model a command works on, and where its weights came from.

    ``checkpoint`` given: those weights (``load_checkpoint``). Otherwise a testbed model loads its shipped
    checkpoint (``quant/checkpoints/<name>.pt``), and any other model starts from random weights seeded by
    ``seed`` (pretrained timm weights cannot be downloaded offline; pass them as a checkpoint file).
    """
    from quant.models import CHECKPOINT_DIR, create_model, is_testbed

    path: Path | None = Path(checkpoint) if checkpoint is not None else None
    if path is None and is_testbed(model_name) and (CHECKPOINT_DIR / f"{model_name}.pt").is_file():
        path = CHECKPOINT_DIR / f"{model_name}.pt"
    if path is None:
        torch.manual_seed(seed)
        return create_model(model_name, **overrides), Weights("random")
    model, saved = load_checkpoint(model_name, path, **overrides)
    outputs = getattr(model, "num_classes", None)
    kwargs = {**inferred_kwargs(model_name, saved), **overrides}
    return model, Weights(str(path), saved.classes, int(outputs) if outputs else None, saved.data_config, kwargs)


def fit_head_(model: nn.Module, weights: Weights, num_classes: int, seed: int = 0) -> nn.Module:
    """Give a randomly initialised model ``num_classes`` outputs (timm's ``reset_classifier``); trained weights
    are left alone (their head is checked against the data instead)."""
    if not weights.random or getattr(model, "num_classes", num_classes) == num_classes:
        return model
    if not hasattr(model, "reset_classifier"):
        raise InputError(f"cannot resize the classifier of {type(model).__name__} to {num_classes} classes")
    torch.manual_seed(seed)
    model.reset_classifier(num_classes)
    return model
