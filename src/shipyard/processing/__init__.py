"""Processing declared at import and stored in the manifest: what users send becomes what the graph
takes (an image recipe, recipe.py), and what the graph gives becomes an answer (post.py).

The server runs the host-side half of a recipe (ImageFront: decoding pictures) before the graph, and
the graph holds the rest, so the server, batch jobs and the edge run one artifact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from shipyard.processing import post
from shipyard.processing.image import ImageFront, pixels
from shipyard.processing.recipe import ImageRecipe
from shipyard.signature import Signature, TensorSpec

if TYPE_CHECKING:
    import onnx

    from shipyard.convert.check import Converted

__all__ = [
    "ImageFront", "ImageRecipe", "attach_image", "front_for", "graph_inputs", "pixels", "post", "recipe_of",
]  # fmt: skip


def recipe_of(signature: Signature) -> ImageRecipe | None:
    """The version's image recipe, when it takes pictures."""
    data = signature.preprocess
    return None if data is None or data.get("kind") != "image" else ImageRecipe.from_dict(data)


def front_for(signature: Signature) -> ImageFront | None:
    """What the server runs before the graph, for a version that takes pictures."""
    recipe = recipe_of(signature)
    return None if recipe is None else ImageFront(recipe)


def graph_inputs(signature: Signature) -> tuple[TensorSpec, ...]:
    """The inputs the graph itself takes: a recipe's pictures are uint8 pixels there."""
    recipe = recipe_of(signature)
    if recipe is None:
        return signature.inputs
    pixels_spec = TensorSpec(recipe.input, "UINT8", recipe.pixels_shape)
    return tuple(pixels_spec if spec.name == recipe.input else spec for spec in signature.inputs)


def attach_image(converted: Converted, text: str, tolerance: float = 1e-4) -> Converted:
    """`converted` with the image recipe `text` in front, checked: on pictures of several sizes and
    kinds (processing/samples.py), the composed graph on the decoded pixels gives what the model
    gives on the same pixels scaled, normalised and laid out with numpy."""
    import onnx

    from shipyard.convert.check import run_onnx
    from shipyard.processing import graph, samples

    model = onnx.load_model_from_string(converted.onnx_bytes)
    composed, recipe = graph.attach(model, text)
    composed_bytes = composed.SerializeToString()
    decoded = np.stack([pixels(picture, recipe, i) for i, picture in enumerate(samples.pictures())])
    original = graph.model_input(model)
    expected = run_onnx(converted.onnx_bytes, {original.name: reference(decoded, recipe, original)})
    got = run_onnx(composed_bytes, {recipe.input: decoded})
    check = _compare(expected, got, tolerance, len(decoded))
    stored = {**recipe.to_dict(), "check": check}
    spec = TensorSpec(recipe.input, "BYTES", (-1,))
    signature = replace(
        converted.signature,
        inputs=tuple(spec if s.name == original.name else s for s in converted.signature.inputs),
        preprocess=stored,
    )
    return replace(converted, onnx_bytes=composed_bytes, signature=signature)


def reference(decoded: np.ndarray, recipe: ImageRecipe, value: onnx.ValueInfoProto) -> np.ndarray:
    """The recipe's graph half done with numpy: what the model takes from uint8 pixels [n, H, W, C]."""
    import onnx

    depth = recipe.depth
    mean = np.resize(np.asarray(recipe.mean, dtype=np.float32), depth)
    std = np.resize(np.asarray(recipe.std, dtype=np.float32), depth)
    values = decoded.astype(np.float32)
    if recipe.invert:
        values = 255 - values
    if recipe.channels == "BGR":  # mean and std are in the model's channel order
        values = values[..., ::-1]
    x: np.ndarray = (values * np.float32(recipe.scale) - mean) / std
    if recipe.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif recipe.layout == "FLAT":
        x = x.reshape(len(x), -1)
    elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return np.ascontiguousarray(x.astype(elem))


def _compare(
    expected: list[np.ndarray], got: list[np.ndarray], tolerance: float, n: int
) -> dict[str, object]:
    from shipyard.convert.check import require_close

    result = require_close(expected, got, tolerance, n, "generated pictures")
    return {"pictures": n, "max_abs_diff": result.max_abs_diff, "tolerance": tolerance}
