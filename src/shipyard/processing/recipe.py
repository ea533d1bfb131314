"""The image recipe: how the bytes of a picture become the tensor a model takes, declared at import.

    image: resize=256, center_crop=224, scale=1/255, normalize=imagenet, layout=NCHW, channels=RGB

Two halves, so that one artifact serves the server, batch jobs and the edge. The server decodes,
resizes and crops with Pillow (processing/image.py): pictures come in every size, and only pixels of
one size can be batched. The rest (scaling, normalising, channel order and layout) is a graph put in
front of the model (processing/graph.py), which takes uint8 pixels [batch, height, width, channels]:
what a browser's canvas gives, too.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from shipyard.errors import InvalidInput

KIND = "image"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CHANNELS = {"RGB": 3, "BGR": 3, "L": 1}
LAYOUTS = ("NCHW", "NHWC", "FLAT")
"""FLAT: a model that takes [batch, height * width * channels] (an MLP on pixels), rows of NHWC."""
RESAMPLING = ("bilinear", "bicubic", "nearest", "lanczos")
_KEYS = (
    "resize", "center_crop", "scale", "normalize", "mean", "std", "layout", "channels", "resample", "invert",
)  # fmt: skip
_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


@dataclass(frozen=True)
class ImageRecipe:
    """A recipe as stored in the manifest (Signature.preprocess); sizes are (width, height)."""

    height: int
    width: int
    """The pixels the graph takes: the crop, else the resize."""
    resize: tuple[int, int] | int | None = None
    """(width, height) exactly, or the shorter side's length (the aspect ratio kept), or None."""
    center_crop: tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    """Per channel in the model's order (B, G, R for channels=BGR), or one for all."""
    layout: str = "NCHW"
    channels: str = "RGB"
    resample: str = "bilinear"
    invert: bool = False
    """Dark ink on light paper, for a model trained on light on dark (255 - x before scaling)."""
    input: str = "image"
    """The graph's (and the request's) input name."""

    @property
    def depth(self) -> int:
        """How many channels the model sees: 3 for colour, 1 for grey."""
        return CHANNELS[self.channels]

    @property
    def pixels_shape(self) -> tuple[int, int, int, int]:
        """The graph's input: uint8 [batch, height, width, channels]."""
        return (-1, self.height, self.width, self.depth)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = KIND
        data["resize"] = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        data["center_crop"] = list(self.center_crop) if self.center_crop else None
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecipe:
        resize = data.get("resize")
        crop = data.get("center_crop")
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            resize=(int(resize[0]), int(resize[1])) if isinstance(resize, list) else resize,
            center_crop=(int(crop[0]), int(crop[1])) if crop else None,
            scale=float(data["scale"]),
            mean=tuple(float(m) for m in data["mean"]),
            std=tuple(float(s) for s in data["std"]),
            layout=str(data["layout"]),
            channels=str(data["channels"]),
            resample=str(data.get("resample", "bilinear")),
            invert=bool(data.get("invert", False)),
            input=str(data.get("input", "image")),
        )

    def describe(self) -> str:
        """The recipe as it was written (the form `model show` prints)."""
        parts = []
        if self.resize is not None:
            exact = self.resize if isinstance(self.resize, int) else f"{self.resize[0]}x{self.resize[1]}"
            parts.append(f"resize={exact}")  # a bare number is the shorter side
        if self.center_crop is not None:
            parts.append(f"center_crop={_size_text(self.center_crop)}")
        parts.append(f"scale={_number_text(self.scale)}")
        if (self.mean, self.std) == IMAGENET:
            parts.append("normalize=imagenet")
        elif self.mean != (0.0,) or self.std != (1.0,):
            parts.append(f"mean={' '.join(map(_number_text, self.mean))}")
            parts.append(f"std={' '.join(map(_number_text, self.std))}")
        parts += [f"layout={self.layout}", f"channels={self.channels}"]
        if self.resample != "bilinear":
            parts.append(f"resample={self.resample}")
        if self.invert:
            parts.append("invert=true")
        return f"{KIND}: " + ", ".join(parts)


def parse(text: str) -> dict[str, str]:
    """The options of a recipe's text, checked for names only (`build` reads the values)."""
    kind, colon, rest = text.partition(":")
    if not colon or kind.strip().lower() != KIND:
        raise InvalidInput(f"bad --preprocess {text!r}: expected 'image: resize=256, center_crop=224, ...'")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value.strip():
            raise InvalidInput(f"bad --preprocess option {item!r}: expected key=value")
        if key not in _KEYS:
            raise InvalidInput(f"unknown --preprocess option {key!r}: the options are {', '.join(_KEYS)}")
        options[key] = value.strip()
    return options


def build(text: str, model_input: tuple[int, ...], input_name: str = "image") -> ImageRecipe:
    """The recipe `text` describes, completed and checked against the model's image input
    ([batch, C, H, W] or [batch, H, W, C], float): the layout and channels default to what its shape
    says, the pixel size to its height and width."""
    options = parse(text)
    layout = options.get("layout", _layout_of(model_input)).upper()
    if layout not in LAYOUTS:
        raise InvalidInput(f"bad layout {layout!r}: NCHW, NHWC or flat")
    if layout == "FLAT":
        return _flat(options, model_input, input_name)
    if len(model_input) != 4:
        raise InvalidInput(
            f"the model's input has shape {list(model_input)}: an image recipe needs [batch, C, H, W] "
            "or [batch, H, W, C] (or layout=flat for [batch, pixels])"
        )
    if layout == "NCHW":
        c, h, w = model_input[1], model_input[2], model_input[3]
    else:
        h, w, c = model_input[1], model_input[2], model_input[3]
    channels = options.get("channels", "L" if c == 1 else "RGB").upper()
    if channels not in CHANNELS:
        raise InvalidInput(f"bad channels {channels!r}: RGB, BGR or L (grey)")
    if c > 0 and CHANNELS[channels] != c:
        raise InvalidInput(f"channels={channels} gives {CHANNELS[channels]} channels; the model takes {c}")
    resize = _resize(options.get("resize"))
    crop = _size(options["center_crop"], "center_crop") if "center_crop" in options else None
    final = crop or (resize if isinstance(resize, tuple) else None) or ((w, h) if w > 0 and h > 0 else None)
    if final is None:
        raise InvalidInput(
            "the model takes images of any size: give the size with center_crop=N or resize=WxH"
        )
    if (w > 0 and final[0] != w) or (h > 0 and final[1] != h):
        raise InvalidInput(
            f"the recipe gives {final[0]}x{final[1]} pixels; the model takes {w}x{h} (width x height)"
        )
    if resize is None and crop is None:
        resize = final  # no size given: every picture is resized to the model's
    if isinstance(resize, int) and crop is None:
        raise InvalidInput(
            f"resize={resize} keeps each picture's aspect ratio, so pictures would come in many sizes: "
            f"add center_crop={final[0] if final[0] == final[1] else f'{final[0]}x{final[1]}'}, or give "
            "resize=WxH"
        )
    return _recipe(options, final, resize, crop, layout, channels, input_name)


def _recipe(
    options: dict[str, str],
    final: tuple[int, int],
    resize: tuple[int, int] | int | None,
    crop: tuple[int, int] | None,
    layout: str,
    channels: str,
    input_name: str,
) -> ImageRecipe:
    mean, std = _normalize(options, CHANNELS[channels])
    resample = options.get("resample", "bilinear").lower()
    if resample not in RESAMPLING:
        raise InvalidInput(f"bad resample {resample!r}: {', '.join(RESAMPLING)}")
    invert = options.get("invert", "false").lower()
    if invert not in ("true", "false"):
        raise InvalidInput(f"bad invert {invert!r}: true or false")
    return ImageRecipe(
        height=final[1], width=final[0], resize=resize, center_crop=crop,
        scale=_scale(options.get("scale", "1/255")), mean=mean, std=std, layout=layout,
        channels=channels, resample=resample, invert=invert == "true", input=input_name,
    )  # fmt: skip


def _flat(options: dict[str, str], model_input: tuple[int, ...], input_name: str) -> ImageRecipe:
    """A model on rows of pixels: the size must be given, and fit the row's length."""
    if len(model_input) != 2:
        raise InvalidInput(f"layout=flat needs a model input of [batch, pixels]; it has {list(model_input)}")
    channels = options.get("channels", "L").upper()
    if channels not in CHANNELS:
        raise InvalidInput(f"bad channels {channels!r}: RGB, BGR or L (grey)")
    resize = _resize(options.get("resize"))
    crop = _size(options["center_crop"], "center_crop") if "center_crop" in options else None
    final = crop or (resize if isinstance(resize, tuple) else None)
    if final is None:
        raise InvalidInput("layout=flat needs the picture's size: resize=WxH or center_crop=N")
    values = final[0] * final[1] * CHANNELS[channels]
    if model_input[1] > 0 and model_input[1] != values:
        raise InvalidInput(
            f"the recipe gives {final[0]}x{final[1]}x{CHANNELS[channels]} = {values} values; "
            f"the model takes {model_input[1]}"
        )
    return _recipe(options, final, resize, crop, "FLAT", channels, input_name)


def _layout_of(shape: tuple[int, ...]) -> str:
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if len(shape) == 4 and shape[3] in (1, 3):
        return "NHWC"
    return "FLAT" if len(shape) == 2 else "NCHW"


def _size(text: str, what: str) -> tuple[int, int]:
    found = _SIZE.match(text.strip().lower())
    if not found or int(found.group(1)) == 0 or (found.group(2) and int(found.group(2)) == 0):
        raise InvalidInput(f"bad {what} {text!r}: a size like 224 or 224x160 (width x height)")
    width = int(found.group(1))
    return width, int(found.group(2) or width)


def _resize(text: str | None) -> tuple[int, int] | int | None:
    """A bare number is the shorter side (the aspect ratio kept); WxH is exact."""
    if text is None:
        return None
    size = _size(text, "resize")
    return size if "x" in text.lower() else size[0]


def _scale(text: str) -> float:
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise InvalidInput(f"bad scale {text!r}: a number or a fraction like 1/255") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"bad scale {text!r}: it must be above 0")
    return value


def _normalize(options: dict[str, str], depth: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    named = options.get("normalize", "none").lower()
    if named not in ("imagenet", "none"):
        raise InvalidInput(f"bad normalize {named!r}: imagenet or none (or mean=... std=...)")
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean, std = IMAGENET if named == "imagenet" else ((0.0,), (1.0,))
    if depth == 1 and named == "imagenet":
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    mean = _numbers(options["mean"], "mean") if "mean" in options else mean
    std = _numbers(options["std"], "std") if "std" in options else std
    for values, what in ((mean, "mean"), (std, "std")):
        if len(values) not in (1, depth):
            raise InvalidInput(f"{what} has {len(values)} values: give 1 or {depth} (one per channel)")
    if any(s == 0 for s in std):
        raise InvalidInput("std cannot be 0")
    return mean, std


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace("/", " ").split())
    except ValueError:
        raise InvalidInput(f"bad {what} {text!r}: numbers separated by spaces, e.g. 0.5 0.5 0.5") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"bad {what} {text!r}: numbers separated by spaces, e.g. 0.5 0.5 0.5")
    return values


def _size_text(size: tuple[int, int] | int) -> str:
    if isinstance(size, int):
        return str(size)
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def _number_text(value: float) -> str:
    fraction = Fraction(value).limit_denominator(1000)
    if fraction.denominator > 1 and abs(float(fraction) - value) < 1e-12:
        return f"{fraction.numerator}/{fraction.denominator}"  # 1/255 reads better than 0.00392157
    return f"{value:g}"
