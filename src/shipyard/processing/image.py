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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.machine import usable_cores
from shipyard.processing.recipe import ImageRecipe

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""What Pillow may open: the formats people send, not every format it knows (less to attack)."""
MAX_PIXELS = 50_000_000
"""The largest picture decoded or made by a resize (a 48-megapixel phone photo fits): a small file can
claim a huge picture, and a 1x64000 one would become one of gigapixels once its shorter side is resized.
With one decoding thread per core, this bounds what decoding can hold at once."""
MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
"""How the formats' files begin: what does is a picture's bytes; other text is read as base64."""
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \t\r\n")
_ORIENTATION = 0x0112
_DATA_URL = b"data:"
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""16-bit grey (and 32-bit integer) pictures: Pillow's convert() clips them to 8 bits, so they are
scaled (the top 8 bits kept) first."""


def pixels(data: Any, recipe: ImageRecipe, index: int = 0) -> np.ndarray:
    """One picture (bytes, or base64 text) as uint8 [height, width, channels]; InvalidInput naming
    the item when it is not a picture Pillow can read, or is too large."""
    from PIL import Image, ImageOps

    raw = _bytes(data, recipe.input, index)
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as opened:
            _check_size(opened.size, recipe, index)
            image = ImageOps.exif_transpose(opened) if _turned(opened) else opened
            image = _eight_bits(image)
            image = image.convert("L" if recipe.channels == "L" else "RGB")
            _check_size(image.size, recipe, index)
            image = _resize(image, recipe)
            if recipe.center_crop is not None:
                image = _crop(image, recipe.center_crop)
            array = np.asarray(image, dtype=np.uint8)
    except InvalidInput:
        raise
    except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, struct.error, TypeError, ...
        unknown = type(exc).__name__ == "UnidentifiedImageError"  # its message names a BytesIO object
        reason = "it is none of these" if unknown else (str(exc).split("\n")[0] or type(exc).__name__)
        raise InvalidInput(
            f"input {recipe.input!r}: item {index} is not a picture that can be read "
            f"({', '.join(FORMATS)}): {reason}"
        ) from None
    wanted = (recipe.height, recipe.width, recipe.depth)
    if array.size != recipe.height * recipe.width * recipe.depth:
        raise InvalidInput(
            f"input {recipe.input!r}: item {index} became {array.shape[1]}x{array.shape[0]} pixels, not the "
            f"{recipe.width}x{recipe.height} the model takes (the recipe resizes without cropping)"
        )
    return array.reshape(wanted)


def _check_size(size: tuple[int, int], recipe: ImageRecipe, index: int) -> None:
    """Refuse a picture, as sent or as the recipe would resize it, past MAX_PIXELS."""
    width, height = size
    resized = _resized_size(size, recipe.resize)
    for w, h in ((width, height), resized):
        if w * h > MAX_PIXELS:
            raise InvalidInput(
                f"input {recipe.input!r}: item {index} is {width}x{height} pixels"
                + ("" if (w, h) == (width, height) else f", {w}x{h} once resized")
                + f"; at most {MAX_PIXELS // 1_000_000} megapixels are decoded"
            )


def _eight_bits(image: Any) -> Any:
    from PIL import Image

    if image.mode not in _WIDE_MODES:
        return image
    wide = np.asarray(image).astype(np.int64)
    return Image.fromarray(np.clip(wide >> 8, 0, 255).astype(np.uint8), "L")


def _bytes(data: Any, name: str, index: int) -> bytes:
    """The picture's bytes: as sent (they begin as a picture format's do), or decoded from base64 text
    (a data: URL's too)."""
    if isinstance(data, str):
        data = data.encode("ascii", errors="replace")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"input {name!r}: item {index} must be a picture's bytes or base64 text")
    raw = bytes(data)
    if raw.startswith(MAGIC) or not raw.isascii():
        return raw
    text = raw.partition(b",")[2] if raw.startswith(_DATA_URL) else raw
    if not _BASE64.issuperset(text):
        raise InvalidInput(f"input {name!r}: item {index} is neither a picture nor base64 of one")
    try:
        return bytes(binascii.a2b_base64(b"".join(text.split()), strict_mode=True))
    except binascii.Error:
        raise InvalidInput(f"input {name!r}: item {index} is neither a picture nor base64 of one") from None


def _turned(image: Any) -> bool:
    """Whether the picture's EXIF says it is stored turned or mirrored (read without decoding it)."""
    try:
        return int(image.getexif().get(_ORIENTATION, 1)) != 1
    except Exception:  # a broken EXIF block: the picture is used as stored
        return False


def _resized_size(size: tuple[int, int], wanted: tuple[int, int] | int | None) -> tuple[int, int]:
    """The size a picture of `size` has after the recipe's resize (itself when there is none)."""
    if wanted is None:
        return size
    if isinstance(wanted, tuple):
        return wanted
    width, height = size  # the shorter side to `wanted`, the aspect ratio kept (torchvision's Resize)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = wanted, int(wanted * long / max(short, 1))
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _resize(image: Any, recipe: ImageRecipe) -> Any:
    from PIL import Image

    size = _resized_size(image.size, recipe.resize)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling[recipe.resample.upper()])


def _crop(image: Any, size: tuple[int, int]) -> Any:
    """The centre `size` (width, height); a smaller picture is padded with black (torchvision's)."""
    width, height = image.size
    crop_w, crop_h = size
    left, top = round((width - crop_w) / 2.0), round((height - crop_h) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


class ImageFront:
    """The server's half of a version's image recipe: the pictures of an input, as the graph's pixels.
    Every version's pictures are decoded on one pool of a thread per core (Pillow releases the GIL):
    what decoding holds at once is bounded by the cores, not by the versions served."""

    def __init__(self, recipe: ImageRecipe) -> None:
        self.recipe = recipe

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`inputs` with the pictures decoded, on the pool (a request's pictures at once)."""
        items = inputs[self.recipe.input].reshape(-1).tolist()
        loop, pool = asyncio.get_running_loop(), _pool()
        runs = [loop.run_in_executor(pool, pixels, item, self.recipe, i) for i, item in enumerate(items)]
        arrays = [await runs[0]] if len(runs) == 1 else await asyncio.gather(*runs)
        return {**inputs, self.recipe.input: np.stack(arrays)}

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        """Blocking: the pictures as uint8 [n, height, width, channels] (batch jobs)."""
        found = list(_pool().map(pixels, items, [self.recipe] * len(items), range(len(items))))
        return np.stack(found) if found else np.empty(self.recipe.pixels_shape[1:], np.uint8)[None][:0]


_decoders: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """The process's picture-decoding threads, one per core it may use, made on first use."""
    if not _decoders:
        _decoders.append(ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="pictures"))
    return _decoders[0]
