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


def bomb_png(path: Path, side: int = 10_000) -> Path:
    """A real decompression bomb: a valid ``side``×``side`` 1-bit grey PNG (10⁸ pixels by default, over Pillow's
    89,478,485-pixel limit) of ~12 kB, whose pixels would decode to 100 MB as 8-bit grey."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + b"\0" * ((side + 7) // 8)  # filter type 0, then the row's bits
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * side, 9))
        + chunk(b"IEND", b"")
    )
    return path
