"""The user's data, the way the model expects it: image folders streamed through a torch DataLoader,
preprocessed with the model's own data config (timm's ``resolve_data_config`` + ``create_transform``).

Layouts ``--data DIR`` accepts:
- ImageNet style: ``DIR/train/<class>/*`` plus ``DIR/val/<class>/*`` (or ``validation/`` or ``test/``): train
  images calibrate and score, val/test images evaluate.
- Flat: ``DIR/<class>/*``: a seeded, stratified 75/25 split of the file list (no image is read to split it).
``--calib-data`` and ``--eval-data`` name each side explicitly (a flat folder, or an ImageNet-style one whose
``train``/``val`` side is taken). ``digits`` is scikit-learn's digits, as before (``quant.testbed``);
``synthetic`` has no images: calibration images are synthesised from the model (``quant.synthetic``).

Nothing here holds a folder in memory: a dataset is a list of (path, label), images are decoded per batch.
Every check a user can fail (layout, classes, channels, image size, an unreadable or oversized image) raises
``InputError`` naming the folder or file, before any expensive stage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from quant.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "DataConfig",
    "ImageFiles",
    "ModelData",
    "as_model_data",
    "evaluate_data",
    "list_class_folder",
    "model_data_config",
    "open_data",
    "open_image",
    "stratified_subset",
    "tensor_data",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
TRAIN_DIRS = ("train",)
EVAL_DIRS = ("val", "validation", "test")
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "La"})
# PIL refuses images over 2x this many pixels (DecompressionBombError) and warns over 1x; mixbit refuses both.
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS (≈ 0.25 GB of 24-bit RGB)


@dataclass(frozen=True)
class DataConfig:
    """How images become model input: resize to ``input_size[1:] / crop_pct`` with ``interpolation``, crop
    ``input_size[1:]`` (``crop_mode`` center/squash/border), scale to [0, 1], subtract ``mean``, divide by
    ``std`` (per channel). The keys and meaning are timm's data config."""

    input_size: tuple[int, int, int]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @property
    def channels(self) -> int:
        return self.input_size[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str) -> DataConfig:
        try:
            size = tuple(int(v) for v in obj["input_size"])
            if len(size) != 3:
                raise ValueError("input_size must be (channels, height, width)")
            return cls(
                input_size=size,  # type: ignore[arg-type]
                interpolation=str(obj.get("interpolation", "bicubic")),
                crop_pct=float(obj.get("crop_pct", 0.875)),
                crop_mode=str(obj.get("crop_mode", "center")),
                mean=tuple(float(v) for v in obj.get("mean", (0.485, 0.456, 0.406))),
                std=tuple(float(v) for v in obj.get("std", (0.229, 0.224, 0.225))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: bad data config ({exc})") from None

    def transform(self) -> Any:
        """The evaluation transform (PIL image → normalised float tensor (C, H, W)), built by timm."""
        from quant._torch import import_timm

        import_timm()
        from timm.data import create_transform

        return create_transform(
            input_size=self.input_size,
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
            crop_mode=self.crop_mode,
            mean=self.mean,
            std=self.std,
            is_training=False,
        )


def _fit_channels(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """A per-channel statistic for ``channels``: as given when the count matches, else their mean repeated (a
    grey model given ImageNet's RGB statistics gets their mean)."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    return (sum(values) / len(values),) * channels


def model_input_size(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) the model takes."""
    from quant.models import default_input

    _, c, h, w = default_input(model).shape
    return int(c), int(h), int(w)


def model_data_config(
    model: nn.Module,
    *,
    recorded: Mapping[str, Any] | None = None,
    img_size: int | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataConfig:
    """The preprocessing ``model`` expects: what a checkpoint ``recorded`` (``mixbit train`` writes it), else
    timm's ``resolve_data_config`` for the model, with the model's actual input size; keyword arguments override.
    ``img_size`` must be the model's own unless it can take other sizes."""
    from quant._torch import import_timm

    import_timm()
    from timm.data import resolve_data_config

    channels, height, width = model_input_size(model)
    if recorded:
        base = DataConfig.from_dict(recorded, "checkpoint data config")
    else:
        cfg = resolve_data_config({}, model=model)
        base = DataConfig(
            input_size=(channels, height, width),
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
            crop_mode=str(cfg.get("crop_mode", "center")),
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        )
    size = (height, width) if img_size is None else (img_size, img_size)
    if img_size is not None and (img_size, img_size) != (height, width):
        raise InputError(
            f"--img-size {img_size}: the model takes {height}x{width} images (build it at that size, or train "
            "at it with `mixbit train --img-size`)"
        )
    config = replace(
        base,
        input_size=(channels, *size),
        mean=_fit_channels(mean if mean is not None else base.mean, channels),
        std=_fit_channels(std if std is not None else base.std, channels),
    )
    if interpolation is not None:
        if interpolation not in ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"):
            raise InputError(f"--interpolation {interpolation!r}: choose nearest, bilinear, bicubic, ...")
        config = replace(config, interpolation=interpolation)
    if crop_pct is not None:
        if not 0.0 < crop_pct <= 1.0:
            raise InputError(f"--crop-pct must be in (0, 1], got {crop_pct}")
        config = replace(config, crop_pct=crop_pct)
    if any(s <= 0 or not math.isfinite(s) for s in config.std):
        raise InputError(f"--std must be positive, got {config.std}")
    return config


def check_img_size(img_size: int, patch_size: int = 1, flag: str = "--img-size") -> int:
    """``img_size`` if it is a usable image side: positive and at least (and a multiple of) ``patch_size``."""
    if img_size < 1:
        raise InputError(f"{flag} must be a positive number of pixels, got {img_size}")
    if img_size < patch_size or img_size % patch_size:
        raise InputError(f"{flag} {img_size}: must be a multiple of the model's patch size {patch_size}")
    if img_size > 4096:
        raise InputError(f"{flag} {img_size}: larger than 4096 pixels")
    return img_size


def open_image(path: Path, channels: int, where: str = "--data") -> Any:
    """Decode one image as a PIL image with ``channels`` (1: grey ``L``, 3: ``RGB``).

    16-bit grey images (PNG ``I;16``) are scaled to 8 bits (not clipped, as PIL's ``convert("L")`` does);
    images over Pillow's pixel limit are refused rather than decoded (decompression bombs).
    """
    return _read_image(path, where, lambda img: (img.load(), _to_mode(img, channels))[1])


def _read_image(path: Path, where: str, use: Callable[[Any], Any]) -> Any:
    """``use(img)`` on the opened image at ``path``, with images over Pillow's pixel limit (decompression bombs)
    refused before decoding and every decoder error turned into one ``InputError`` naming ``where`` and the file."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise InputError(
                        f"{where}: image {path} is {img.width}x{img.height} pixels, over the "
                        f"{MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb?)"
                    )
                return use(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{where}: image {path} refused: {str(exc).splitlines()[0][:160]}") from None
    except Exception as exc:  # PIL decoders raise many kinds of error for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: cannot read image {path}: {reason[:200]}") from None


def _to_mode(img: Any, channels: int) -> Any:
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: keep the top 8 bits of the 0..65535 range (PIL's convert("L") clips at 255 instead)
        arr = np.asarray(img, dtype=np.int64)
        top = 65535 if img.mode != "I" or arr.max(initial=0) > 255 else 255
        img = Image.fromarray(np.clip(arr * 255 // top, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    return img.convert("L" if channels == 1 else "RGB")


def image_channels(path: Path, where: str = "--data") -> int:
    """1 for grey images (including 16-bit and palette images whose palette is grey), 3 for colour."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode == "P":
                rgb = np.asarray(img.convert("RGB"))
                return 1 if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]) else 3
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: cannot read image {path}: {reason[:200]}") from None
    return 1 if mode in _GREY_MODES else 3


@dataclass(frozen=True)
class ClassFolder:
    """Images of a folder ``root/<class>/*``: file paths with labels (class index in sorted name order)."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...]

    def labels(self) -> np.ndarray:
        return np.fromiter((label for _, label in self.files), dtype=np.int64, count=len(self.files))


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_class_folder(root: str | Path, flag: str = "--data") -> ClassFolder:
    """List ``root/<class>/*`` image files; ``InputError`` when ``root`` is not a folder of at least two class
    sub-folders holding images."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{flag} {root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{flag} {root}: not a folder (expected one sub-folder of images per class)")
    try:
        class_dirs = _subdirs(root)
    except OSError as exc:
        raise InputError(f"{flag} {root}: cannot list it: {exc.strerror or exc}") from None
    if len(class_dirs) < 2:
        loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES][:1]
        hint = f" (images such as {loose[0]} lie directly in it)" if loose else ""
        raise InputError(
            f"{flag} {root}: found {len(class_dirs)} class sub-folder(s){hint}; need one sub-folder of images "
            "per class, at least 2"
        )
    files: list[tuple[Path, int]] = []
    empty = []
    for label, folder in enumerate(class_dirs):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            empty.append(folder.name)
        files.extend((p, label) for p in images)
    if empty:
        raise InputError(
            f"{flag} {root}: class folder {root / empty[0]} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return ClassFolder(root, tuple(p.name for p in class_dirs), tuple(files))


def imagenet_layout(root: Path) -> tuple[Path, Path | None] | None:
    """(train folder, val/test folder or None) when ``root`` is laid out as ``train/``, ``val/`` or ``test/``."""
    if not root.is_dir():
        return None
    names = {p.name for p in _subdirs(root)}
    train = next((root / n for n in TRAIN_DIRS if n in names), None)
    evaluation = next((root / n for n in EVAL_DIRS if n in names), None)
    if train is None and evaluation is None:
        return None
    # a flat folder whose classes happen to include "test" would have other class folders beside it
    if names - set(TRAIN_DIRS) - set(EVAL_DIRS):
        return None
    if train is None:
        raise InputError(f"--data {root}: has {evaluation.name}/ but no train/ folder for calibration")  # type: ignore[union-attr]
    return train, evaluation


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of ``count`` items with each class's share kept (largest remainders), chosen by ``seed``;
    sorted. All indices when ``count`` covers them."""
    n = len(labels)
    if count >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    quota = sizes * count / n
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: count - int(take.sum())]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def _split_files(folder: ClassFolder, test_fraction: float, seed: int) -> tuple[ClassFolder, ClassFolder]:
    """A stratified split of the file list: ``test_fraction`` of each class to the second part."""
    labels = folder.labels()
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test_idx.extend(idx[:n_test])
        train_idx.extend(idx[n_test:])
    if not train_idx or not test_idx:
        raise InputError(f"--data {folder.root}: too few images to split into calibration and evaluation")
    pick = lambda idx: tuple(folder.files[i] for i in sorted(idx))  # noqa: E731
    return replace(folder, files=pick(train_idx)), replace(folder, files=pick(test_idx))


class ImageFiles(Dataset):
    """A torch Dataset over (path, label) pairs: decodes and transforms one image per item."""

    def __init__(self, folder: ClassFolder, config: DataConfig, flag: str = "--data") -> None:
        self.folder = folder
        self.config = config
        self.flag = flag
        self._transform = config.transform()

    def __len__(self) -> int:
        return len(self.folder.files)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.folder.classes

    def labels(self) -> np.ndarray:
        return self.folder.labels()

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.folder.files[index]
        image = open_image(path, self.config.channels, self.flag)
        return self._transform(image), label


class _Labelled(TensorDataset):
    """In-memory images with labels (digits, synthetic images); ``labels()`` as ImageFiles has."""

    def __init__(self, x: Tensor, y: Tensor, classes: tuple[str, ...]) -> None:
        super().__init__(x, y)
        self.classes = classes

    def labels(self) -> np.ndarray:
        return self.tensors[1].numpy()


class _Deferred(Dataset):
    """Images made on first use (``--data synthetic``): synthesis is expensive, so it runs only once every
    cheap check of the run (checkpoint, data, output folder, budget) has passed."""

    def __init__(self, make: Any, classes: tuple[str, ...]) -> None:
        self._make = make
        self._data: _Labelled | None = None
        self.classes = classes

    def materialise(self) -> _Labelled:
        if self._data is None:
            x, y = self._make()
            self._data = _Labelled(x, y, self.classes)
        return self._data

    def __len__(self) -> int:
        return len(self.materialise())

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.materialise()[index]

    def labels(self) -> np.ndarray:
        return self.materialise().labels()


def _subset(dataset: Dataset, index: np.ndarray) -> Dataset:
    if isinstance(dataset, ImageFiles):
        folder = replace(dataset.folder, files=tuple(dataset.folder.files[i] for i in index))
        return ImageFiles(folder, dataset.config, dataset.flag)
    x, y = dataset.tensors  # type: ignore[attr-defined]
    t = torch.as_tensor(index)
    return _Labelled(x[t], y[t], dataset.classes)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ModelData:
    """Calibration and evaluation data for one model, preprocessed as it expects.

    ``calib``: images that calibrate and score (labelled: real classes, or the random targets synthetic images
    were optimised for); ``evaluation``: labelled held-out images, or None (then ``eval_skipped`` says why).
    """

    name: str
    classes: tuple[str, ...]
    config: DataConfig
    calib: Dataset
    evaluation: Dataset | None
    eval_skipped: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    batch_size: int = 64
    workers: int = 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.input_size

    @property
    def num_eval(self) -> int:
        return 0 if self.evaluation is None else len(self.evaluation)  # type: ignore[arg-type]

    @property
    def num_calib(self) -> int:
        return len(self.calib)  # type: ignore[arg-type]

    def calib_dataset(self) -> Dataset:
        """The calibration images, made now if they are synthesised on first use."""
        return self.calib.materialise() if isinstance(self.calib, _Deferred) else self.calib

    def loader(self, dataset: Dataset, batch_size: int | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size or self.batch_size, shuffle=False, num_workers=self.workers)

    def calib_batch(self, count: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """``count`` calibration images (N, C, H, W) and labels (N,): the first ``count`` of a permutation seeded
        by ``seed`` (all images when fewer; the pipeline has always chosen them so). Only those are decoded."""
        if count < 1:
            raise InputError(f"need at least 1 calibration image, asked for {count}")
        calib = self.calib_dataset()
        order = torch.randperm(len(calib), generator=torch.Generator().manual_seed(seed))[:count]  # type: ignore[arg-type]
        if isinstance(calib, _Labelled):
            x, y = calib.tensors
            return x[order], y[order]
        xs, ys = [], []
        for xb, yb in self.loader(_subset(calib, order.numpy())):
            xs.append(xb)
            ys.append(yb)
        return torch.cat(xs), torch.cat(ys)

    def eval_batches(self, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Evaluation images in batches, decoded as they are needed."""
        if self.evaluation is None:
            return iter(())
        return iter(self.loader(self.evaluation, batch_size))

    def eval_tensors(self, count: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``count`` evaluation images (all when None) in memory, for bit-exactness checks."""
        if self.evaluation is None:
            raise InputError(f"no evaluation images: {self.eval_skipped}")
        n = self.num_eval if count is None else min(count, self.num_eval)
        xs, ys = [], []
        for xb, yb in self.loader(_subset(self.evaluation, np.arange(n))):
            xs.append(xb)
            ys.append(yb)
        return torch.cat(xs), torch.cat(ys)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": len(self.classes),
            "calib_images": self.num_calib,
            "eval_images": self.num_eval,
            "eval_skipped": self.eval_skipped,
            "sources": self.sources,
            "data_config": self.config.to_json(),
        }


def evaluate_data(model: nn.Module, data: ModelData) -> tuple[float | None, float | None]:
    """(top-1 accuracy as a fraction, mean cross-entropy in nats per image) on ``data``'s evaluation images,
    streamed batch by batch onto the model's device; (None, None) without evaluation data."""
    if data.evaluation is None or data.num_eval == 0:
        return None, None
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    correct, loss, seen = 0, 0.0, 0
    with torch.no_grad():
        for xb, yb in data.eval_batches():
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            correct += int((logits.argmax(dim=-1) == yb).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            seen += len(yb)
    model.train(was_training)
    return correct / seen, loss / seen


# folders up to this many images have every file's header and checksums read up front (Image.verify: 0.8 ms
# per 40x40 PNG measured on the loaded 2-core machine), so a broken image fails before any expensive stage; in
# bigger folders a broken image is named when it is first decoded
SCAN_LIMIT = 5000


def _verify_image(path: Path, flag: str) -> None:
    _read_image(path, flag, lambda img: img.verify())


def _check_images(folder: ClassFolder, channels: int, flag: str, model_label: str) -> None:
    """Decodes the first image of each class — grey images for an RGB model (or colour ones for a grey model) are
    refused — and, in folders of up to ``SCAN_LIMIT`` images, checks that every file is a readable image."""
    for label in range(len(folder.classes)):
        path = next(p for p, lab in folder.files if lab == label)
        open_image(path, channels, flag)
        found = image_channels(path, flag)
        if found != channels:
            kind = {1: "grey (1-channel)", 3: "colour (3-channel)"}
            raise InputError(
                f"{flag} {folder.root}: {path} is a {kind[found]} image; {model_label} takes "
                f"{kind.get(channels, f'{channels}-channel')} images"
            )
    if len(folder.files) <= SCAN_LIMIT:
        for path, _ in folder.files:
            _verify_image(path, flag)


def _check_classes(
    classes: tuple[str, ...],
    expected: tuple[str, ...] | None,
    num_outputs: int | None,
    flag: str,
    root: str,
    weights: str,
) -> None:
    if expected is not None and tuple(classes) != tuple(expected):
        show = lambda names: ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")  # noqa: E731
        raise InputError(
            f"{flag} {root}: its classes ({show(classes)}) are not the {len(expected)} classes {weights} was "
            f"trained on ({show(expected)})"
        )
    if num_outputs is not None and num_outputs != len(classes):
        raise InputError(
            f"{flag} {root}: {len(classes)} classes, but the model's head ({weights}) has {num_outputs} outputs"
        )


def _side(path: str, which: str, flag: str) -> ClassFolder:
    """A folder given to --calib-data (``which="train"``) or --eval-data (``"eval"``)."""
    root = Path(path)
    layout = imagenet_layout(root) if root.is_dir() else None
    if layout is not None:
        train, evaluation = layout
        if which == "train":
            return list_class_folder(train, flag)
        if evaluation is None:
            raise InputError(f"{flag} {root}: has train/ but no val/ or test/ folder to evaluate on")
        return list_class_folder(evaluation, flag)
    return list_class_folder(root, flag)


def open_data(
    data: str | None,
    config: DataConfig,
    *,
    calib_data: str | None = None,
    eval_data: str | None = None,
    eval_images: int | None = None,
    classes: tuple[str, ...] | None = None,
    num_outputs: int | None = None,
    weights: str = "the model",
    model_label: str = "the model",
    seed: int = 0,
    synthetic: Any = None,
    batch_size: int = 64,
) -> ModelData:
    """Open the data a command was given, check it against the model, and return :class:`ModelData`.

    ``data``: ``digits``, ``synthetic``, a folder (ImageNet or flat layout) or None (only ``calib_data`` and
    ``eval_data``). ``classes``: the class names the weights were trained on (a checkpoint's record), checked
    against the folder's; ``num_outputs``: the model head's width, checked against the class count.
    ``synthetic``: a callable ``() -> (images, labels)`` used for ``--data synthetic``, called when the
    calibration images are first used (after every cheap check, since it is expensive). ``eval_images``:
    evaluate on a stratified, seeded subset of that many.
    """
    if eval_images is not None and eval_images < 1:
        raise InputError(f"--eval-images must be at least 1, got {eval_images}")
    channels = config.channels
    calib: Dataset | None = None
    evaluation: Dataset | None = None
    data_classes: tuple[str, ...] | None = None
    sources: dict[str, str] = {}
    name = data or calib_data or "synthetic"
    skipped: str | None = None
    synthesise = False

    if data == "digits":
        from quant.testbed import load_digits_split

        if channels != 1:
            raise InputError(
                f"--data digits: digits are grey (1-channel) images; {model_label} takes {channels}-channel images"
            )
        if config.input_size[1] != config.input_size[2]:
            raise InputError(f"--data digits: square images only; {model_label} takes {config.input_size[1:]}")
        split = load_digits_split(seed=seed, img_size=config.input_size[1])
        data_classes = split.classes
        calib = _Labelled(split.x_train, split.y_train, split.classes)
        evaluation = _Labelled(split.x_test, split.y_test, split.classes)
        sources = {"calib": "digits (train split)", "eval": "digits (test split)"}
    elif data == "synthetic":
        synthesise = True
        sources["calib"] = "synthetic (PSAQ-ViT patch similarity)"
    elif data is not None:
        root = Path(data)
        layout = imagenet_layout(root) if root.is_dir() else None
        if layout is not None:
            train = list_class_folder(layout[0], "--data")
            calib_folder = train
            eval_folder = list_class_folder(layout[1], "--data") if layout[1] is not None else None
            if eval_folder is None:
                calib_folder, eval_folder = _split_files(train, 0.25, seed)
                sources = {"calib": f"{layout[0]} (75 % split)", "eval": f"{layout[0]} (25 % split)"}
            else:
                sources = {"calib": str(layout[0]), "eval": str(layout[1])}
        else:
            folder = list_class_folder(root, "--data")
            calib_folder, eval_folder = _split_files(folder, 0.25, seed)
            sources = {"calib": f"{root} (75 % split, seed {seed})", "eval": f"{root} (25 % split, seed {seed})"}
        _check_classes(calib_folder.classes, classes, num_outputs, "--data", str(root), weights)
        _check_images(calib_folder, channels, "--data", model_label)
        data_classes = calib_folder.classes
        calib = ImageFiles(calib_folder, config, "--data")
        if eval_folder is not None:
            if eval_folder.classes != calib_folder.classes:
                raise InputError(
                    f"--data {root}: {eval_folder.root} has classes {eval_folder.classes[:5]}, "
                    f"{calib_folder.root} has {calib_folder.classes[:5]}: they must be the same"
                )
            _check_images(eval_folder, channels, "--data", model_label)
            evaluation = ImageFiles(eval_folder, config, "--data")

    if calib_data is not None:
        if data == "synthetic":
            raise InputError("give --data synthetic or --calib-data, not both")
        folder = _side(calib_data, "train", "--calib-data")
        _check_classes(folder.classes, classes, num_outputs, "--calib-data", calib_data, weights)
        _check_images(folder, channels, "--calib-data", model_label)
        calib = ImageFiles(folder, config, "--calib-data")
        data_classes = folder.classes
        sources["calib"] = str(folder.root)
    if eval_data is not None:
        folder = _side(eval_data, "eval", "--eval-data")
        _check_classes(folder.classes, classes, num_outputs, "--eval-data", eval_data, weights)
        if data_classes is not None and folder.classes != data_classes:
            raise InputError(
                f"--eval-data {eval_data}: its classes ({', '.join(folder.classes[:5])}) differ from the "
                f"calibration data's ({', '.join(data_classes[:5])})"
            )
        _check_images(folder, channels, "--eval-data", model_label)
        evaluation = ImageFiles(folder, config, "--eval-data")
        data_classes = data_classes or folder.classes
        sources["eval"] = str(folder.root)
    if calib is None and not synthesise:
        raise InputError("no calibration data: give --data (digits, synthetic or a folder) or --calib-data")
    if evaluation is None:
        skipped = "no labelled evaluation data (give --eval-data DIR)"
    elif eval_images is not None:
        index = stratified_subset(evaluation.labels(), eval_images, seed)  # type: ignore[attr-defined]
        evaluation = _subset(evaluation, index)
    if synthesise:
        if synthetic is None:
            raise InputError("--data synthetic is not available for this command")
        n_classes = num_outputs if num_outputs is not None else 0
        syn_classes = data_classes or classes or tuple(str(i) for i in range(n_classes))
        calib = _Deferred(synthetic, tuple(syn_classes))
        data_classes = tuple(syn_classes)
    assert calib is not None and data_classes is not None
    return ModelData(
        name=name,
        classes=data_classes,
        config=config,
        calib=calib,
        evaluation=evaluation,
        eval_skipped=skipped,
        sources=sources,
        batch_size=batch_size,
    )


def tensor_data(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor | None,
    y_test: Tensor | None,
    classes: tuple[str, ...],
    name: str = "tensors",
    batch_size: int = 64,
) -> ModelData:
    """:class:`ModelData` over images already in memory (digits, a ``quant.testbed.Split``, synthetic images);
    their preprocessing is done, so the config only records their shape."""
    c, h, w = (int(s) for s in x_train.shape[1:])
    evaluation = None if x_test is None or y_test is None or len(y_test) == 0 else _Labelled(x_test, y_test, classes)
    return ModelData(
        name=name,
        classes=tuple(classes),
        config=DataConfig(input_size=(c, h, w), mean=(0.0,) * c, std=(1.0,) * c),
        calib=_Labelled(x_train, y_train, tuple(classes)),
        evaluation=evaluation,
        eval_skipped=None if evaluation is not None else "no labelled evaluation images",
        sources={"calib": f"{name} (in memory)"},
        batch_size=batch_size,
    )


def as_model_data(data: Any) -> ModelData:
    """``data`` as :class:`ModelData`: itself, or a ``quant.testbed.Split`` wrapped without copying."""
    if isinstance(data, ModelData):
        return data
    if all(hasattr(data, a) for a in ("x_train", "y_train", "x_test", "y_test", "classes")):
        return tensor_data(data.x_train, data.y_train, data.x_test, data.y_test, data.classes, data.name)
    raise TypeError(f"expected ModelData or a testbed Split, got {type(data).__name__}")


def peek(data: str | None, calib_data: str | None = None) -> tuple[tuple[str, ...], int]:
    """(class names, image channels) of the training data, without preprocessing it — what a model to be trained
    on it needs (``mixbit train``). Channels: 1 if the first image is grey, else 3."""
    if data == "digits":
        return tuple(str(i) for i in range(10)), 1
    if data == "synthetic":
        raise InputError("--data synthetic has no labelled images to train on; give an image folder")
    if calib_data is not None:
        folder, flag = _side(calib_data, "train", "--calib-data"), "--calib-data"
    elif data is not None:
        root, flag = Path(data), "--data"
        layout = imagenet_layout(root) if root.is_dir() else None
        folder = list_class_folder(layout[0] if layout is not None else root, flag)
    else:
        raise InputError("no training data: give --data (digits or a folder) or --calib-data")
    return folder.classes, image_channels(folder.files[0][0], flag)
