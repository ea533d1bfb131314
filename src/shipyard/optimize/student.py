"""A narrower copy of an MLP or CNN teacher, read from its ONNX graph, for distillation.

The teacher must be a chain: each node takes the previous one's output (plus stored weights). Every
layer with weights (Gemm, MatMul, Conv) keeps its kind and attributes with `width` times its output
channels, except the last, which keeps the teacher's outputs; fixed preprocessing (x / 16, x - mean)
is copied as it is. Weights start fresh: only the architecture is taken from the teacher.

Imported only by `distill`, after it has checked that torch is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from shipyard.errors import InvalidInput

ACTIVATIONS = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}
ARITHMETIC = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}
SKIPPED = {"Identity", "Dropout"}


class Fixed(nn.Module):
    """`x op constant` (or `constant op x`) with the constant frozen: preprocessing, not a weight."""

    def __init__(self, op: str, constant: np.ndarray, constant_first: bool) -> None:
        super().__init__()
        self.op = op
        self.constant_first = constant_first
        self.register_buffer("constant", torch.from_numpy(np.array(constant, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn: Any = ARITHMETIC[self.op]
        constant = self.get_buffer("constant")
        result: torch.Tensor = fn(constant, x) if self.constant_first else fn(x, constant)
        return result


class Student(nn.Module):
    """The student: `body` gives logits; a teacher ending in Softmax gets one at the end again."""

    def __init__(self, body: nn.Sequential, softmax: bool) -> None:
        super().__init__()
        self.body = body
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.body(x)
        return torch.softmax(logits, dim=-1) if self.softmax else logits


@dataclass
class _Walk:
    constants: dict[str, np.ndarray]
    layers: list[nn.Module] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)  # student output width of each weighted layer
    teacher_channels: int | None = None
    student_channels: int | None = None
    flattened: bool = False
    softmax: bool = False


def build_student(model: onnx.ModelProto, width: float) -> tuple[Student, str]:
    """The student and a one-line description of its layer widths, e.g. '64 -> 16 -> 10'."""
    if not 0.0 < width <= 1.0:
        raise InvalidInput(f"--width must be in (0, 1], got {width}")
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(_attr(node, "value"))
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    weighted = [n for n in nodes if n.op_type in ("Gemm", "MatMul", "Conv")]
    if not weighted:
        raise InvalidInput("the teacher has no Gemm, MatMul or Conv layer to narrow: pass --student FILE")
    last = weighted[-1]
    walk = _Walk(constants)
    inputs_in = [v.name for v in graph.input if v.name not in constants]
    if len(inputs_in) != 1:
        raise InvalidInput("a student is built from a teacher with one input: pass --student FILE")
    current = inputs_in[0]
    for node in nodes:
        data = [name for name in node.input if name and name not in constants]
        if data != [current] or len(node.output) < 1:
            raise InvalidInput(
                f"the teacher is not a chain of layers at its {node.op_type} node: pass --student FILE"
            )
        if walk.softmax:
            raise InvalidInput("the teacher has layers after its Softmax: pass --student FILE")
        _add(walk, node, width, node is last)
        current = node.output[0]
    if current != graph.output[0].name or len(graph.output) != 1:
        raise InvalidInput("the teacher's chain does not end at its only output: pass --student FILE")
    first_in = _teacher_dims(walk, weighted[0])[0]
    shape = " -> ".join(str(w) for w in [first_in, *walk.widths])
    return Student(nn.Sequential(*walk.layers), walk.softmax), shape


def _add(walk: _Walk, node: onnx.NodeProto, width: float, is_last: bool) -> None:
    op = node.op_type
    if op in ACTIVATIONS:
        walk.layers.append(ACTIVATIONS[op]())
    elif op == "LeakyRelu":
        walk.layers.append(nn.LeakyReLU(_attr(node, "alpha", 0.01)))
    elif op in SKIPPED:
        pass
    elif op in ("Gemm", "MatMul", "Conv"):
        _weighted(walk, node, width, is_last)
    elif op in ARITHMETIC:
        _arithmetic(walk, node)
    elif op in ("MaxPool", "AveragePool"):
        kernel = tuple(_attr(node, "kernel_shape"))
        strides = tuple(_attr(node, "strides", kernel))
        if op == "MaxPool":
            walk.layers.append(nn.MaxPool2d(kernel, strides, _padding(node)))
        else:
            walk.layers.append(nn.AvgPool2d(kernel, strides, _padding(node)))
    elif op == "GlobalAveragePool":
        walk.layers.append(nn.AdaptiveAvgPool2d(1))
    elif op in ("Flatten", "Reshape"):
        walk.layers.append(nn.Flatten(1))
        walk.flattened = True
    elif op == "BatchNormalization":
        if walk.student_channels is None:
            raise InvalidInput("the teacher normalises its input before any layer: pass --student FILE")
        walk.layers.append(
            nn.BatchNorm2d(walk.student_channels)
            if not walk.flattened
            else nn.BatchNorm1d(walk.student_channels)
        )
    elif op == "Softmax":
        walk.softmax = True
    else:
        raise InvalidInput(f"cannot build a student from the teacher's {op} node: pass --student FILE")


def _weighted(walk: _Walk, node: onnx.NodeProto, width: float, is_last: bool) -> None:
    t_in, t_out = _teacher_dims(walk, node)
    if walk.student_channels is None:
        s_in = t_in
    elif walk.flattened and walk.teacher_channels:
        if t_in % walk.teacher_channels:
            raise InvalidInput("the teacher flattens in a way a student cannot follow: pass --student FILE")
        s_in = walk.student_channels * (t_in // walk.teacher_channels)
    else:
        s_in = walk.student_channels
    s_out = t_out if is_last else max(1, round(t_out * width))
    bias = node.op_type != "MatMul" and len(node.input) > 2 and bool(node.input[2])
    if node.op_type == "Conv":
        if _attr(node, "group", 1) != 1:
            raise InvalidInput("the teacher has grouped convolutions: pass --student FILE")
        kernel: Any = tuple(walk.constants[node.input[1]].shape[2:])
        walk.layers.append(
            nn.Conv2d(
                s_in,
                s_out,
                kernel,
                stride=_attr(node, "strides", 1),
                padding=_padding(node),
                dilation=_attr(node, "dilations", 1),
                bias=bias,
            )
        )
    else:
        walk.layers.append(nn.Linear(s_in, s_out, bias=bias))
    walk.widths.append(s_out)
    walk.teacher_channels, walk.student_channels = t_out, s_out
    walk.flattened = False


def _teacher_dims(walk: _Walk, node: onnx.NodeProto) -> tuple[int, int]:
    weight = walk.constants.get(node.input[1])
    if weight is None:
        raise InvalidInput(f"the teacher's {node.op_type} has no stored weight: pass --student FILE")
    if node.op_type == "Conv":
        return int(weight.shape[1]), int(weight.shape[0])
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
            raise InvalidInput("the teacher's Gemm uses transA, alpha or beta: pass --student FILE")
        out, inp = weight.shape if _attr(node, "transB", 0) else weight.shape[::-1]
        return int(inp), int(out)
    return int(weight.shape[0]), int(weight.shape[1])


def _arithmetic(walk: _Walk, node: onnx.NodeProto) -> None:
    constant_first = node.input[0] in walk.constants
    constant = walk.constants[node.input[0] if constant_first else node.input[1]]
    previous = walk.layers[-1] if walk.layers else None
    if (
        node.op_type == "Add"
        and isinstance(previous, nn.Linear)
        and previous.bias is None
        and constant.ndim == 1
    ):
        walk.layers[-1] = nn.Linear(previous.in_features, previous.out_features, bias=True)  # MatMul + Add
        return
    if constant.size > 1 and walk.student_channels is not None:
        raise InvalidInput(
            f"the teacher's {node.op_type} by a tensor between layers cannot be narrowed: pass --student FILE"
        )
    walk.layers.append(Fixed(node.op_type, constant, constant_first))


def _padding(node: onnx.NodeProto) -> Any:
    pads = list(_attr(node, "pads", []))
    if not pads:
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise InvalidInput("the teacher uses SAME padding: pass --student FILE")
        return 0
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        raise InvalidInput("the teacher pads unevenly: pass --student FILE")
    return tuple(pads[:half])


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    if default is None:
        raise InvalidInput(f"the teacher's {node.op_type} node lacks its {name} attribute")
    return default
