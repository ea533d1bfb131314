"""A folder of images, one sub-folder per class, as a batch the model's signature accepts.

Images are converted to the signature's channel count (1: grey, 3: RGB), resized to its height and
width, laid out NCHW or NHWC as its shape says, and scaled to [0, 1]. Pillow is an optional extra.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput
from shipyard.signature import TensorSpec

Array = npt.NDArray[Any]

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MODES = {1: "L", 3: "RGB"}


def image_layout(spec: TensorSpec) -> tuple[bool, int, int, int]:
    """(channels first?, channels, height, width) from a [batch, C, H, W] or [batch, H, W, C] input."""
    shape = spec.shape
    if len(shape) == 4 and shape[1] in MODES and shape[2] > 0 and shape[3] > 0:
        return True, shape[1], shape[2], shape[3]
    if len(shape) == 4 and shape[3] in MODES and shape[1] > 0 and shape[2] > 0:
        return False, shape[3], shape[1], shape[2]
    raise InvalidInput(
        f"input {spec.name!r} of shape {list(shape)} is not an image batch: a folder of images needs "
        "[batch, C, H, W] or [batch, H, W, C] with 1 or 3 channels and a fixed height and width"
    )


def pillow() -> Any:
    """Pillow's Image module, or a clear error naming the extra to install."""
    try:
        from PIL import Image
    except ImportError:
        raise InvalidInput("reading images needs Pillow: pip install 'shipyard[images]'") from None
    return Image


def decode(data: bytes | Path, spec: TensorSpec) -> Array:
    """One image (its bytes or its file) as the input `spec` takes it: converted to its channels,
    resized to its height and width, laid out as its shape says, scaled to [0, 1] (float32)."""
    image_module = pillow()
    channels_first, channels, height, width = image_layout(spec)
    with image_module.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        resized = image.convert(MODES[channels]).resize((width, height), image_module.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32).reshape(height, width, channels) / 255.0
    return pixels.transpose(2, 0, 1) if channels_first else pixels


def load_folder(path: Path, spec: TensorSpec) -> tuple[dict[str, Array], Array, list[str]]:
    """Inputs, each image's class (its sub-folder's name) and the classes in sorted order."""
    pillow()
    image_layout(spec)
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InvalidInput(f"{path} has no class sub-folders (one folder of images per class)")
    pictures, names = [], []
    for name in classes:
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() not in SUFFIXES:
                continue
            try:
                pictures.append(decode(file, spec))
            except OSError as exc:
                raise InvalidInput(f"cannot read image {file}: {exc}") from None
            names.append(name)
    if not pictures:
        raise InvalidInput(f"{path} has no images ({', '.join(sorted(SUFFIXES))}) in its class folders")
    batch = np.stack(pictures).astype(numpy_dtype(spec.datatype))
    return {spec.name: batch}, np.asarray(names, dtype=object), classes
