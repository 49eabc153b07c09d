"""Image folders for tests: small PNGs whose class is learnable from colour (a model trains on them in seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40))


def colour_folder(
    root: Path,
    per_class: dict[str, int] | None = None,
    *,
    classes: int = 3,
    size: int = 20,
    mode: str = "RGB",
    seed: int = 0,
) -> Path:
    """``root/<split>/c<k>/<i>.png`` for each split in ``per_class`` (default train 8, val 4), or a flat
    ``root/c<k>/`` when ``per_class`` is ``{"": n}``. Class k is colour k plus Gaussian noise (σ 30)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (per_class or {"train": 8, "val": 4}).items():
        for k in range(classes):
            folder = root / split / f"c{k}" if split else root / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.array(COLOURS[k % len(COLOURS)])[None, None, :] + rng.normal(0, 30, (size, size, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                (image.convert("L") if mode == "L" else image).save(folder / f"{i:03d}.png")
    return root
