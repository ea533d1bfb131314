"""Small ONNX models built in code for the tests: no downloads, no torch needed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


@dataclass(frozen=True)
class Linear:
    """A linear classifier on digits: logits = x @ W + b. Tests compute expectations in numpy."""

    onnx_bytes: bytes
    W: np.ndarray
    b: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) @ self.W + self.b).astype(np.float32)


@cache
def digits_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@cache
def digits_linear(seed: int = 0) -> Linear:
    """Least-squares one-vs-rest weights: accurate enough to classify digits, fast to fit."""
    X, y = digits_data()
    rng = np.random.default_rng(seed)
    targets = np.eye(10, dtype=np.float32)[y] * 10 - 5
    Xb = np.hstack([X / 16.0, np.ones((len(X), 1), np.float32)])
    sol = np.linalg.lstsq(Xb + rng.normal(0, 1e-3, Xb.shape), targets, rcond=None)[0]
    return _linear((sol[:-1] / 16.0).astype(np.float32), sol[-1].astype(np.float32))


@cache
def digits_confused(classes: int = 5) -> Linear:
    """digits_linear with the scores of its first `classes` classes rotated, so those are mistaken
    for one another: about `classes`/10 of the accuracy gone, with the same inputs and speed (a
    candidate a gate must catch)."""
    good = digits_linear()
    order = [*range(1, classes), 0, *range(classes, 10)]
    return _linear(np.ascontiguousarray(good.W[:, order]), np.ascontiguousarray(good.b[order]))


def _linear(W: np.ndarray, b: np.ndarray) -> Linear:
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "b"], ["logits"])],
        "digits_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return Linear(model.SerializeToString(), W, b)


@cache
def many_types() -> bytes:
    """Inputs of several datatypes, each passed through (Identity), to test every codec path."""
    types = {
        "f64": TensorProto.DOUBLE,
        "i32": TensorProto.INT32,
        "i64": TensorProto.INT64,
        "flag": TensorProto.BOOL,
        "text": TensorProto.STRING,
    }
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name in types]
    graph = helper.make_graph(
        nodes,
        "many_types",
        [helper.make_tensor_value_info(n, t, ["batch", 2]) for n, t in types.items()],
        [helper.make_tensor_value_info(f"{n}_out", t, ["batch", 2]) for n, t in types.items()],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@cache
def slow_model(steps: int = 600, size: int = 128) -> bytes:
    """A deliberately compute-heavy model (a chain of matrix products) to keep a runner busy."""
    rng = np.random.default_rng(0)
    W = np.linalg.qr(rng.standard_normal((size, size)))[0].astype(np.float32)  # orthogonal: no blow-up
    nodes, current = [], "x"
    for i in range(steps):
        nodes.append(helper.make_node("MatMul", [current, "W"], [f"h{i}"]))
        current = f"h{i}"
    nodes.append(helper.make_node("ReduceMean", [current], ["y"], axes=[1, 2], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        [numpy_helper.from_array(W, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass(frozen=True)
class Dense:
    """A deep linear net with one large hidden layer: megabytes of weights, answers checkable in numpy."""

    onnx_bytes: bytes
    weights: tuple[np.ndarray, ...]

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = x.astype(np.float32)
        for w in self.weights:
            out = out @ w
        return out


@cache
def dense_model(seed: int, hidden: int = 2048) -> Dense:
    """About 4 * hidden**2 bytes of weights (16 MiB at 2048): for memory-budget tests."""
    rng = np.random.default_rng(seed)
    shapes = [(64, hidden), (hidden, hidden), (hidden, 10)]
    weights = tuple((rng.normal(0, 1, s) / np.sqrt(s[0])).astype(np.float32) for s in shapes)
    names = ["input", "h1", "h2", "logits"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", [names[i], f"W{i}"], [names[i + 1]]) for i in range(3)],
        f"dense_{seed}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, f"W{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return Dense(model.SerializeToString(), weights)


@cache
def digits_slow(steps: int = 600, size: int = 512) -> bytes:
    """digits_linear's answers after `steps` extra matrix products per batch (a few ms on one core):
    the same inputs, outputs and logits, only slower (a candidate a latency gate must catch)."""
    good = digits_linear()
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((64, size)).astype(np.float32) / 8
    W = np.linalg.qr(rng.standard_normal((size, size)))[0].astype(np.float32)  # orthogonal: no blow-up
    nodes = [
        helper.make_node("Gemm", ["input", "W", "b"], ["fast"]),
        helper.make_node("MatMul", ["input", "spread"], ["h0"]),
    ]
    for i in range(steps):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "square"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node(
            "ReduceSum", [f"h{steps}"], ["total"], keepdims=1
        ),  # depends on the input: not folded
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["fast", "nothing"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(good.W, "W"),
            numpy_helper.from_array(good.b, "b"),
            numpy_helper.from_array(spread, "spread"),
            numpy_helper.from_array(W, "square"),
            numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@cache
def brightness_model(size: int = 8) -> bytes:
    """Images [batch, 3, size, size] to logits [dark, bright]: the mean pixel, times 10 from 0.5."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Sub", ["mean", "half"], ["centred"]),
            helper.make_node("Unsqueeze", ["centred", "axis"], ["column"]),
            helper.make_node("Mul", ["column", "W"], ["logits"]),
        ],
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
            numpy_helper.from_array(np.array([[-10.0, 10.0]], np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@cache
def two_inputs_model() -> bytes:
    """Inputs a [batch, 2] and b [batch, 3], concatenated, to logits [batch, 2]: W's fixed weights."""
    W = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
            helper.make_node("MatMul", ["ab", "W"], ["logits"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(W, "W")],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@cache
def picture_cnn(channels: int = 3, size: int = 32, classes: int = 4, layout: str = "NCHW") -> bytes:
    """A small convolutional classifier on pictures ([batch, C, H, W] floats, or NHWC): a 3x3 convolution
    with stride 2, ReLU, global average pooling and a dense layer to class logits. Its answer depends on
    where colours are in the picture, so a wrong layout, channel order or crop changes it."""
    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.5, (8, channels, 3, 3)).astype(np.float32)
    dense = rng.normal(0, 1.0, (8, classes)).astype(np.float32)
    shape = ["batch", channels, size, size] if layout == "NCHW" else ["batch", size, size, channels]
    nodes = (
        [] if layout == "NCHW" else [helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2])]
    )
    first = "pixels" if layout == "NCHW" else "nchw"
    nodes += [
        helper.make_node("Conv", [first, "weight"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "picture_cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(dense, "dense")],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model.SerializeToString()
