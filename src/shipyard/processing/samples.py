"""Pictures drawn in code, of the sizes and kinds people send: for the check at import, the warm-up
of a version that takes pictures, and load tests. Nothing is downloaded."""

from __future__ import annotations

import io

import numpy as np

KINDS = (
    ("JPEG", "RGB", (640, 480)),
    ("PNG", "RGB", (300, 200)),
    ("PNG", "L", (50, 37)),
    ("PNG", "RGBA", (128, 160)),
    ("WEBP", "RGB", (224, 224)),
    ("JPEG", "L", (97, 203)),
)


def picture(fmt: str = "PNG", mode: str = "RGB", size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """One encoded picture: a smooth gradient with a few discs, so that resizing has edges to blend."""
    from PIL import Image, ImageDraw

    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            (x * 255 // max(width - 1, 1)),
            (y * 255 // max(height - 1, 1)),
            ((x + y) * 127 // max(width + height, 1)),
        ],
        axis=-1,
    ).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(3, max(4, min(size) // 3)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def pictures() -> list[bytes]:
    """One picture of each kind in KINDS."""
    return [picture(fmt, mode, size, seed) for seed, (fmt, mode, size) in enumerate(KINDS)]
