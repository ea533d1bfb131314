"""Convert a Keras model (a .keras file or a model object) or a TensorFlow SavedModel folder to ONNX,
and prove both give the same numbers.

TensorFlow, Keras and tf2onnx are an optional extra (`shipyard[tensorflow]`), imported only inside the
functions here. A .keras file is loaded in Keras' safe mode, which refuses the Lambda layers and other
Python code such a file can carry; a SavedModel holds a TensorFlow graph, which runs no Python.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    Converted,
    Framework,
    detect_scores,
    first_line,
    require_close,
    rows_of,
    run_onnx,
    sample_inputs,
    signature_of,
    user_inputs,
)
from shipyard.errors import ConversionFailed, NotFound

OPSET = 17
CHECK_BATCH = 8  # differs from a batch of 1 or 2 baked into a graph, so such a batch axis shows up
SAVED_MODEL = "saved_model.pb"
INPUT_NAME = "input"
_MISSING = "TensorFlow is not installed: pip install 'shipyard[tensorflow]'"
# Read once, when TensorFlow is first imported; a setting of the user's own wins. TF 2.21 prints its
# oneDNN notice whatever TF_CPP_MIN_LOG_LEVEL says; without the oneDNN custom ops there is no notice,
# and results do not vary with how work is split across threads.
_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


@dataclass(frozen=True)
class _Source:
    """What is converted: the inputs (named as the ONNX graph's will be), and the model as a function
    from those input tensors to its output tensors by name."""

    framework: Framework
    inputs: list[Any]  # tf.TensorSpec
    call: Callable[..., dict[str, Any]]


def is_saved_model(path: Path) -> bool:
    """A folder that holds a TensorFlow SavedModel (what `model.export(dir)` writes in Keras 3)."""
    return path.is_dir() and (path / SAVED_MODEL).is_file()


def _require_tensorflow() -> None:
    for key, value in _QUIET.items():
        os.environ.setdefault(key, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TensorFlow's imports warn about numpy and protobuf
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
            import tf2onnx  # noqa: F401
    except ImportError:
        raise ConversionFailed(_MISSING) from None


def from_model(
    model: Any, sample: Array | Sequence[Array] | None = None, tolerance: float = 1e-4
) -> Converted:
    """Convert a Keras model (Sequential or functional, with known input shapes) and check it.

    The first axis of every input becomes a dynamic batch axis. The check compares the model's
    outputs with ONNX Runtime's on `sample` when given, else on generated inputs of 8 rows; a
    softmax output is recorded as probabilities, any other [batch, classes] output as logits.
    """
    _require_tensorflow()
    import keras

    if not isinstance(model, keras.Model):
        raise ConversionFailed(f"expected a keras.Model, got {type(model).__name__}")
    return _convert(_keras_source(model), sample, tolerance)


def from_file(
    path: str | Path, sample: Array | Sequence[Array] | None = None, tolerance: float = 1e-4
) -> Converted:
    """Load a .keras file (safe mode: no code from the file runs) or a SavedModel folder and convert
    it as `from_model` does. The version is recorded as from keras or from tensorflow, by what the
    path holds."""
    path = Path(path)
    if is_saved_model(path):
        _require_tensorflow()
        return _convert(_saved_model_source(path), sample, tolerance)
    if path.is_dir():
        raise ConversionFailed(f"{path} is a folder without {SAVED_MODEL}: it is not a SavedModel")
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    # Keras 3's own format only, a zip archive (Keras 2's HDF5 files are not taken)
    if path.suffix.lower() != ".keras" or not zipfile.is_zipfile(path):
        raise ConversionFailed(
            f"{path.name} is neither a .keras file (Keras 3's model.save(path) writes one) "
            "nor a SavedModel folder"
        )
    _require_tensorflow()
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # an unknown layer, code refused by safe mode: many types
        if "safe_mode" in str(exc):
            raise ConversionFailed(
                f"{path.name} holds Python code (a Lambda layer), which loading it would run: "
                "shipyard.importing.import_keras(model, ...) takes the model object instead"
            ) from exc
        raise ConversionFailed(f"{path.name} cannot be loaded by Keras: {first_line(exc)}") from exc
    return from_model(model, sample=sample, tolerance=tolerance)


def _keras_source(model: Any) -> _Source:
    import keras
    import tensorflow as tf

    try:
        tensors = list(model.inputs)
        count = len(model.outputs)
    except (AttributeError, ValueError):  # a model never built, or a subclassed one
        tensors, count = [], 0
    if not tensors or not count:
        raise ConversionFailed(
            f"the {type(model).__name__} has no known inputs: build it with keras.Input(shape=...) "
            "(a Sequential or functional model), or call it once on data"
        )
    names = [INPUT_NAME] if len(tensors) == 1 else _unique([t.name for t in tensors], "input")
    specs = [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=name)
        for t, name in zip(tensors, names, strict=True)
    ]
    outputs = getattr(model, "output_names", None)  # functional models name their outputs
    if not isinstance(outputs, list) or len(outputs) != count:
        outputs = []
    outputs = _unique([str(name) for name in outputs], "output") if outputs else _numbered("output", count)
    # a functional model with several inputs takes them in its own structure (a list, a dict)
    structure = model.input if len(tensors) > 1 else None

    def call(*inputs: Any) -> dict[str, Any]:
        arranged = keras.tree.pack_sequence_as(structure, list(inputs)) if structure else inputs[0]
        result = model(arranged, training=False)
        return dict(zip(outputs, keras.tree.flatten(result), strict=True))

    return _Source("keras", specs, call)


def _saved_model_source(path: Path) -> _Source:
    import tensorflow as tf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises its own error types, and more
        raise ConversionFailed(f"{path} cannot be loaded as a SavedModel: {first_line(exc)}") from exc
    signatures = dict(loaded.signatures)
    function = signatures.get("serving_default") or next(iter(signatures.values()), None)
    if function is None:
        raise ConversionFailed(
            f"{path} has no serving signature: write it with model.export(path), or "
            "tf.saved_model.save(..., signatures=...)"
        )
    _, arguments = function.structured_input_signature
    keys = list(arguments)
    names = [INPUT_NAME] if len(keys) == 1 else keys
    specs = [
        tf.TensorSpec(arguments[key].shape, arguments[key].dtype, name=name)
        for key, name in zip(keys, names, strict=True)
    ]

    def call(*inputs: Any) -> dict[str, Any]:
        # `loaded` owns the variables the signature reads: it must live as long as the function does
        _ = loaded
        return dict(function(**dict(zip(keys, inputs, strict=True))))

    return _Source("tensorflow", specs, call)


def _unique(names: list[str], prefix: str) -> list[str]:
    """The names as they are when they are distinct and non-empty, else numbered ones."""
    if all(names) and len(set(names)) == len(names):
        return names
    return _numbered(prefix, len(names))


def _numbered(prefix: str, count: int) -> list[str]:
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def _stable_names(model: onnx.ModelProto) -> None:
    """Name what tf2onnx names after a counter (the traced function, unknown dims) the same way each
    time, so that the same model converts to the same bytes and importing it again adds nothing."""
    model.graph.doc_string = ""
    for value in [*model.graph.input, *model.graph.output]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param"):
                dim.dim_param = "batch" if axis == 0 else f"{value.name}_{axis}"


def _convert(source: _Source, sample: Array | Sequence[Array] | None, tolerance: float) -> Converted:
    import tensorflow as tf
    import tf2onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function = tf.function(source.call, input_signature=source.inputs)
            proto, _ = tf2onnx.convert.from_function(function, input_signature=source.inputs, opset=OPSET)
    except Exception as exc:  # tracing and tf2onnx raise many unrelated types
        raise ConversionFailed(f"tf2onnx cannot convert the model: {first_line(exc)}") from exc
    model: onnx.ModelProto = proto
    _stable_names(model)
    onnx_bytes = model.SerializeToString()
    signature = signature_of(model)
    if sample is not None:
        inputs, source_of_data = user_inputs(signature, sample), USER_DATA
    else:
        inputs, source_of_data = sample_inputs(signature, batch=CHECK_BATCH), GENERATED
    rows = rows_of(inputs)
    names = [spec.name for spec in signature.outputs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = source.call(*(tf.constant(inputs[spec.name]) for spec in source.inputs))
    except Exception as exc:  # whatever the model's layers raise on these inputs
        raise ConversionFailed(f"the model fails on a sample of {rows} rows: {first_line(exc)}") from exc
    if sorted(result) != sorted(names):
        raise ConversionFailed(f"the ONNX model's outputs {names} are not the model's ({', '.join(result)})")
    expected = {name: result[name].numpy() for name in names}
    actual = dict(zip(names, run_onnx(onnx_bytes, inputs), strict=True))
    check = require_close(expected, actual, tolerance, rows, source_of_data)
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature_of(model, detect_scores(signature, actual)),
        framework=source.framework,
        check=check,
        labels=None,
    )
