"""The graph's half of an image recipe: uint8 pixels [batch, height, width, channels] in front of the
model, scaled, normalised, channels reordered and laid out as the model takes them.

Scaling and normalising fold into one multiply and one add per channel:
(x * scale - mean) / std = x * (scale / std) + (-mean / std).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shipyard.errors import ConversionFailed
from shipyard.processing.recipe import ImageRecipe, build

_PREFIX = "shipyard_pre_"
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)


def model_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The model's one real input (initializers aside), which an image recipe feeds."""
    from shipyard.convert.check import real_inputs

    inputs = real_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(value.name for value in inputs)
        raise ConversionFailed(f"an image recipe needs a model with one input; this one has {names}")
    found: onnx.ValueInfoProto = inputs[0]
    return found


def shape_of(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    from shipyard.convert.check import dims

    return dims(value)


def attach(model: onnx.ModelProto, text: str, name: str = "image") -> tuple[onnx.ModelProto, ImageRecipe]:
    """`model` with the recipe `text`'s graph in front: its input becomes uint8 pixels named `name`."""
    value = model_input(model)
    elem = value.type.tensor_type.elem_type
    if elem not in _FLOATS:
        kind = TensorProto.DataType.Name(elem)
        raise ConversionFailed(f"an image recipe feeds a float input; {value.name!r} takes {kind}")
    recipe = build(text, shape_of(value), name)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    target = value.name
    if target == name:  # the pixels take the input's name: the model's tensor gets another
        target = _PREFIX + "input"
        for node in graph.node:
            node.input[:] = [target if i == name else i for i in node.input]
    nodes, initializers = _front(recipe, name, target, elem)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(initializers)
    kept = [v for v in graph.input if v.name != value.name]
    del graph.input[:]
    pixels = helper.make_tensor_value_info(name, TensorProto.UINT8, ["batch", *recipe.pixels_shape[1:]])
    graph.input.extend([pixels, *kept])
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise ConversionFailed(f"the image recipe's graph does not fit the model: {exc}") from None
    return out, recipe


def _front(
    recipe: ImageRecipe, name: str, target: str, elem: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes from uint8 pixels `name` [n, H, W, C] to the model's input `target`. For NCHW the
    pixels are transposed first, while they are one byte each, and the per-channel multiply and add
    then broadcast over whole planes ([C, 1, 1]): on the innermost axis of 3, ONNX Runtime's broadcast
    took a third of a small CNN's run."""
    p = _PREFIX
    channels_first = recipe.layout == "NCHW"
    factor, shift = folded(recipe)
    per_channel = (-1, 1, 1) if channels_first else (-1,)
    initializers = [
        numpy_helper.from_array(factor.reshape(per_channel), p + "factor"),
        numpy_helper.from_array(shift.reshape(per_channel), p + "shift"),
    ]
    nodes = []
    current = name
    if channels_first:
        nodes.append(helper.make_node("Transpose", [current], [p + "planes"], perm=[0, 3, 1, 2]))
        current = p + "planes"
    nodes.append(helper.make_node("Cast", [current], [p + "float"], to=TensorProto.FLOAT))
    current = p + "float"
    if recipe.channels == "BGR":
        initializers.append(numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), p + "bgr"))
        axis = 1 if channels_first else 3
        nodes.append(helper.make_node("Gather", [current, p + "bgr"], [p + "bgr_out"], axis=axis))
        current = p + "bgr_out"
    nodes.append(helper.make_node("Mul", [current, p + "factor"], [p + "scaled"]))
    nodes.append(helper.make_node("Add", [p + "scaled", p + "shift"], [p + "normal"]))
    current = p + "normal"
    if recipe.layout == "FLAT":
        row = recipe.height * recipe.width * recipe.depth
        initializers.append(numpy_helper.from_array(np.array([-1, row], dtype=np.int64), p + "row"))
        nodes.append(helper.make_node("Reshape", [current, p + "row"], [p + "rows"]))
        current = p + "rows"
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [current], [p + "typed"], to=elem))
    nodes[-1].output[0] = target  # the last step writes the model's input itself
    return nodes, initializers


def folded(recipe: ImageRecipe) -> tuple[np.ndarray, np.ndarray]:
    """(factor, shift) per channel, so that the model's input is pixels * factor + shift:
    (x * scale - mean) / std, with x = 255 - x first when the recipe inverts."""
    depth = recipe.depth
    std = np.array(_per_channel(recipe.std, depth), dtype=np.float64)
    mean = np.array(_per_channel(recipe.mean, depth), dtype=np.float64)
    factor, shift = recipe.scale / std, -mean / std
    if recipe.invert:  # ((255 - x) * scale - mean) / std
        factor, shift = -factor, shift + 255 * recipe.scale / std
    return factor.astype(np.float32), shift.astype(np.float32)


def _per_channel(values: tuple[float, ...], depth: int) -> tuple[float, ...]:
    return values if len(values) == depth else values * depth
