"""The accuracy testbed: scikit-learn's digits (or any image folder) and small ViTs trained here.

Digits: 1,797 8×8 grey images of 0–9 (scikit-learn's copy of the UCI optical digits test set), upsampled
bilinearly to 16×16, scaled to [0, 1] and normalised with the training split's mean and standard
deviation. ``load_digits_split()`` always returns the same stratified 75/25 split for a given seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quant.errors import InputError

__all__ = ["Split", "evaluate", "load_data", "load_digits_split", "load_image_folder", "train"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Split:
    """Train and test images (N, C, H, W) float32, labels (N,) int64, and the class names."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]
    name: str = "digits"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)"""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _normalise(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    mean, std = x_train.mean(), x_train.std().clamp(min=1e-6)
    return (x_train - mean) / std, (x_test - mean) / std


def _stratified_split(y: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, test): ``test_fraction`` of each class to test, chosen by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values


def load_digits_split(seed: int = 0, img_size: int = 16, test_fraction: float = 0.25) -> Split:
    """scikit-learn digits, upsampled to ``img_size``², one channel, split 75/25 per class by ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values are 0..16
    if img_size != 8:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = _stratified_split(y, test_fraction, seed)
    x_train, x_test = _normalise(x[train_idx], x[test_idx])
    return Split(x_train, y[train_idx], x_test, y[test_idx], tuple(str(i) for i in range(10)), "digits")


def load_image_folder(
    root: str | Path, img_size: int = 16, channels: int = 1, seed: int = 0, test_fraction: float = 0.25
) -> Split:
    """Images under ``root/<class>/*`` (PIL-readable), resized to ``img_size``², grey (1) or RGB (3)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root}: not a directory (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"--data {root}: found {len(classes)} class sub-folder(s); need at least 2")
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert("L" if channels == 1 else "RGB").resize((img_size, img_size), Image.BILINEAR)
                    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"--data {root}: cannot read image {path}: {exc}") from None
            images.append(pixels.reshape(img_size, img_size, channels).permute(2, 0, 1).float() / 255.0)
            labels.append(label)
    if not images:
        raise InputError(f"--data {root}: no images found in the class sub-folders")
    x, y = torch.stack(images), torch.tensor(labels, dtype=torch.int64)
    train_idx, test_idx = _stratified_split(y, test_fraction, seed)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise InputError(f"--data {root}: too few images to split into train and test")
    x_train, x_test = _normalise(x[train_idx], x[test_idx])
    return Split(x_train, y[train_idx], x_test, y[test_idx], tuple(classes), str(root))


def load_data(data: str = "digits", img_size: int = 16, channels: int = 1, seed: int = 0) -> Split:
    """``"digits"`` or an image-folder path (the ``--data`` option)."""
    if data == "digits":
        return load_digits_split(seed=seed, img_size=img_size)
    return load_image_folder(data, img_size=img_size, channels=channels, seed=seed)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on (x, y), as a fraction in [0, 1]."""
    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"evaluate: need as many labels as images, got {len(x)} images and {len(y)} labels")
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            correct += int((model(xb).argmax(dim=-1) == yb).sum())
    model.train(was_training)
    return correct / len(x)


def evaluate_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Mean cross-entropy (nats per image) of ``model`` on (x, y). Finer than top-1 on a small test set, where
    one image moves accuracy by a whole step (0.22 points on the 450 held-out digits)."""
    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"evaluate_loss: need as many labels as images, got {len(x)} images and {len(y)} labels")
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            total += float(F.cross_entropy(model(xb), yb, reduction="sum"))
    model.train(was_training)
    return total / len(x)


def train(
    model_name: str,
    data: Split,
    epochs: int = 100,
    seed: int = 0,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    augment: bool = True,
) -> tuple[nn.Module, float]:
    """Train ``model_name`` (a testbed name, or a timm name) on ``data``; returns (model in eval mode,
    test accuracy as a fraction). AdamW with a cosine schedule and one warm-up epoch; ``seed`` fixes
    the initial weights, batch order and augmentation (``quant.training.fit_``, the loop ``mixbit train`` runs)."""
    from quant.data import as_model_data
    from quant.models import TESTBED_MODELS, create_model
    from quant.training import TrainOptions, fit_

    options = TrainOptions(
        epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, weight_decay=weight_decay, augment=augment
    )
    c, h, w = data.image_shape
    torch.manual_seed(seed)
    kwargs = {"num_classes": len(data.classes), "in_chans": c}
    if model_name in TESTBED_MODELS:
        kwargs["img_size"] = h
    if h != w:
        raise InputError(f"training images must be square, got {h}x{w}")
    model = create_model(model_name, **kwargs)
    fit_(model, as_model_data(data), options)
    return model, evaluate(model, data.x_test, data.y_test)


def train_and_save(model_name: str, data: Split, epochs: int, seed: int, out: str | Path | None) -> dict:
    """Train, optionally save a checkpoint; returns the facts ``mixbit train`` reports."""
    start = time.perf_counter()
    model, accuracy = train(model_name, data, epochs, seed)
    seconds = time.perf_counter() - start
    result = {
        "model": model_name,
        "data": data.name,
        "epochs": epochs,
        "seed": seed,
        "train_images": len(data.x_train),
        "test_images": len(data.x_test),
        "classes": len(data.classes),
        "accuracy": accuracy,
        "train_seconds": round(seconds, 2),
        "checkpoint": None,
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model_name,
                "state_dict": model.state_dict(),
                "model_kwargs": {"num_classes": len(data.classes), "in_chans": data.image_shape[0]},
                "data": data.name,
                "classes": list(data.classes),
                "test_accuracy": accuracy,
                "epochs": epochs,
                "seed": seed,
            },
            out,
        )
        result["checkpoint"] = str(out)
    return result
