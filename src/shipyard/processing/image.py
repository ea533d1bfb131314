"""Pictures in: the server's half of an image recipe (processing/recipe.py), done with Pillow.

Each picture is decoded, turned upright (EXIF orientation, as phones write it), converted to RGB or
grey, resized and cropped as the recipe says: uint8 pixels [height, width, channels], the same size
for every picture, so requests batch. The graph does the rest. Pillow releases the GIL while it
decodes and resizes, so a batch of pictures is decoded on a pool of threads, one per core, off the
event loop. A picture arrives as its bytes (binary v2, an upload) or as base64 text (JSON).
"""

from __future__ import annotations

import asyncio
import binascii
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.processing.recipe import ImageRecipe

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""What Pillow may open: the formats people send, not every format it knows (less to attack)."""
MAX_PIXELS = 64_000_000
"""The largest picture decoded (a 48-megapixel phone photo fits): a small file can claim a huge one."""
_ORIENTATION = 0x0112
_DATA_URL = b"data:"


def pixels(data: Any, recipe: ImageRecipe, index: int = 0) -> np.ndarray:
    """One picture (bytes, or base64 text) as uint8 [height, width, channels]; InvalidInput naming
    the item when it is not a picture Pillow can read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    raw = _bytes(data, recipe.input, index)
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(
                    f"input {recipe.input!r}: item {index} is {width}x{height} pixels; at most "
                    f"{MAX_PIXELS // 1_000_000} megapixels are decoded"
                )
            image = ImageOps.exif_transpose(opened) if _turned(opened) else opened
            image = image.convert("L" if recipe.channels == "L" else "RGB")
            image = _resize(image, recipe)
            if recipe.center_crop is not None:
                image = _crop(image, recipe.center_crop)
            array = np.asarray(image, dtype=np.uint8)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise InvalidInput(
            f"input {recipe.input!r}: item {index} is not a picture that can be read "
            f"({', '.join(FORMATS)}): {reason}"
        ) from None
    return array.reshape(recipe.height, recipe.width, recipe.depth)


def _bytes(data: Any, name: str, index: int) -> bytes:
    """The picture's bytes: as sent, or decoded from base64 (a data: URL's too). A picture's own bytes
    are never all ASCII (every format's signature holds a byte above 127 or a control byte), so ASCII
    means base64."""
    if isinstance(data, str):
        data = data.encode("ascii", errors="replace")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"input {name!r}: item {index} must be a picture's bytes or base64 text")
    raw = bytes(data)
    if not raw.isascii():
        return raw
    data = raw
    if data.startswith(_DATA_URL):
        data = data.partition(b",")[2]
    try:
        return bytes(binascii.a2b_base64(b"".join(data.split()), strict_mode=True))
    except binascii.Error:
        raise InvalidInput(f"input {name!r}: item {index} is neither a picture nor base64 of one") from None


def _turned(image: Any) -> bool:
    """Whether the picture's EXIF says it is stored turned or mirrored (read without decoding it)."""
    try:
        return int(image.getexif().get(_ORIENTATION, 1)) != 1
    except Exception:  # a broken EXIF block: the picture is used as stored
        return False


def _resize(image: Any, recipe: ImageRecipe) -> Any:
    from PIL import Image

    size = recipe.resize
    if size is None:
        return image
    width, height = image.size
    if isinstance(size, int):  # the shorter side to `size`, the aspect ratio kept (torchvision's Resize)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size, int(size * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
    if size == (width, height):
        return image
    return image.resize(size, Image.Resampling[recipe.resample.upper()])


def _crop(image: Any, size: tuple[int, int]) -> Any:
    """The centre `size` (width, height); a smaller picture is padded with black (torchvision's)."""
    width, height = image.size
    crop_w, crop_h = size
    left, top = round((width - crop_w) / 2.0), round((height - crop_h) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


class ImageFront:
    """The server's half of a version's image recipe: the pictures of an input, as the graph's pixels."""

    def __init__(self, recipe: ImageRecipe) -> None:
        self.recipe = recipe
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="pictures")

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`inputs` with the pictures decoded, on the pool (a request's pictures at once)."""
        items = inputs[self.recipe.input].reshape(-1).tolist()
        loop = asyncio.get_running_loop()
        runs = [
            loop.run_in_executor(self._pool, pixels, item, self.recipe, i) for i, item in enumerate(items)
        ]
        arrays = [await runs[0]] if len(runs) == 1 else await asyncio.gather(*runs)
        return {**inputs, self.recipe.input: np.stack(arrays)}

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        """Blocking: the pictures as uint8 [n, height, width, channels] (batch jobs)."""
        found = list(self._pool.map(pixels, items, [self.recipe] * len(items), range(len(items))))
        return np.stack(found) if found else np.empty(self.recipe.pixels_shape[1:], np.uint8)[None][:0]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
