"""What an ONNX file holds, measured from the file itself: parameters, weights, sparsity; and the
compaction every candidate gets (tools such as the quantizer leave long names and inferred shapes
that can be a tenth of a small model's bytes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

Array = npt.NDArray[Any]

# op type -> positions of inputs that are weights (pruned, counted for sparsity)
WEIGHT_INPUTS = {"Gemm": (0, 1), "MatMul": (0, 1), "Conv": (1,), "ConvTranspose": (1,)}
# op type -> (weight input, its zero point input): quantized weights whose "zero" is the zero point
ZERO_POINTS = {
    "DequantizeLinear": (0, 2),
    "MatMulInteger": (1, 3),
    "ConvInteger": (1, 3),
    "QLinearMatMul": (3, 5),
    "QLinearConv": (3, 5),
}


def stored_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Initializers and the tensors of Constant nodes: the numbers the file stores."""
    for init in model.graph.initializer:
        yield init.name, init
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    yield node.output[0], attr.t


def parameter_count(model: onnx.ModelProto) -> int:
    """Stored tensors, and the float attributes of ONNX-ML operators, where converted scikit-learn
    models keep their coefficients, intercepts, scales and tree thresholds."""
    tensors = sum(int(np.prod(tensor.dims, dtype=np.int64)) for _, tensor in stored_tensors(model))
    ml = sum(
        len(attr.floats)
        for node in model.graph.node
        if node.domain == "ai.onnx.ml"
        for attr in node.attribute
    )
    return tensors + ml


def weight_names(model: onnx.ModelProto) -> list[str]:
    """Stored tensors of rank >= 2 that multiply activations (Gemm, MatMul and Conv weights)."""
    stored = {init.name: init for init in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        for position in WEIGHT_INPUTS.get(node.op_type, ()):
            if position < len(node.input):
                name = node.input[position]
                if name in stored and len(stored[name].dims) >= 2 and name not in names:
                    names.append(name)
    return names


def sparsity(model: onnx.ModelProto) -> float:
    """The fraction of weight values that are zero, over every weight matrix and kernel.

    Float weights (rank >= 2, see `weight_names`) count when exactly 0; quantized weights when equal
    to their zero point, which is what dequantizes to 0.
    """
    tensors = dict(stored_tensors(model))
    zeros = 0
    total = 0
    seen: set[str] = set()
    for name, zero in _zero_points(model, tensors).items():
        array = numpy_helper.to_array(tensors[name])
        zeros += int(np.count_nonzero(array == zero))
        total += array.size
        seen.add(name)
    for name in weight_names(model):
        if name not in seen and tensors[name].data_type in _FLOAT_TYPES:
            array = numpy_helper.to_array(tensors[name])
            zeros += int(np.count_nonzero(array == 0))
            total += array.size
    return zeros / total if total else 0.0


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


def _zero_points(model: onnx.ModelProto, tensors: dict[str, onnx.TensorProto]) -> dict[str, Array]:
    """Quantized weights (stored, rank >= 2) with their zero points broadcast to the weight's shape."""
    found: dict[str, Array] = {}
    for node in model.graph.node:
        where = ZERO_POINTS.get(node.op_type)
        if where is None or where[0] >= len(node.input):
            continue
        name = node.input[where[0]]
        if name not in tensors or len(tensors[name].dims) < 2:
            continue
        shape = tuple(tensors[name].dims)
        zp_name = node.input[where[1]] if where[1] < len(node.input) else ""
        zero = numpy_helper.to_array(tensors[zp_name]) if zp_name in tensors else np.zeros(())
        if zero.ndim == 1 and zero.size > 1:  # per-channel: along `axis` (DequantizeLinear) or columns
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if node.op_type in ("ConvInteger", "QLinearConv"):
                axis = 0
            elif node.op_type in ("MatMulInteger", "QLinearMatMul"):
                axis = len(shape) - 1
            view = [1] * len(shape)
            view[axis % len(shape)] = zero.size
            zero = zero.reshape(view)
        found[name] = np.broadcast_to(zero, shape)
    return found


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same computation with short internal names and no inferred shapes, node names or docs.

    Graph inputs and outputs keep their names (requests use them); models with subgraphs (If, Loop)
    keep every name, since subgraphs refer to outer values by name.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    del graph.value_info[:]
    inferred = [p for p in model.metadata_props if p.key == "onnx.infer"]
    for prop in inferred:
        model.metadata_props.remove(prop)
    # ClearField, not = "": in ONNX's proto2 messages an empty string that is set is still written
    model.ClearField("doc_string")
    graph.ClearField("doc_string")
    _sort_nodes(graph)
    for node in graph.node:
        node.ClearField("name")
        node.ClearField("doc_string")
    if any(
        attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for n in graph.node
        for attr in n.attribute
    ):
        return model
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            candidate = f"t{len(names)}"
            while candidate in keep:
                candidate += "_"
            names[name] = candidate
        return names[name]

    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for init in graph.initializer:
        init.name = short(init.name)
    return model


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Put nodes in dependency order, as the ONNX spec asks (some converters append nodes at the end)."""
    available = {v.name for v in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:  # a cycle or a value from an outer scope: leave the rest as it was
            ordered.extend(pending)
            break
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        pending = [n for n in pending if all(n is not r for r in ready)]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
