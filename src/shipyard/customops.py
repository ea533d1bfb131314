"""Operators from onnxruntime-extensions (string and tokenizer kernels, domain ai.onnx.contrib): a model
that uses them needs their library registered with each ONNX Runtime session that runs it."""

from __future__ import annotations

import os

import onnxruntime as ort

from shipyard.errors import Unavailable

DOMAIN = "ai.onnx.contrib"
_PROTOBUF = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
_MISSING = "onnxruntime-extensions is not installed: pip install 'shipyard[text]'"


def uses_custom_ops(model_bytes: bytes) -> bool:
    """Whether a serialized model names the extensions' domain. A byte search, not a parse: a model
    that merely mentions the name in a string gets the library registered, which costs nothing."""
    return DOMAIN.encode() in model_bytes


def register(options: ort.SessionOptions, model_bytes: bytes, name: str) -> None:
    """Register the extensions' operators with `options` when the model uses them."""
    if not uses_custom_ops(model_bytes):
        return
    # importing the extensions sets PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python for every process
    # started afterwards (their converter's doing): pure-Python protobuf is slow and lacks some names
    saved = os.environ.get(_PROTOBUF)
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        raise Unavailable(f"{name} uses operators of onnxruntime-extensions; {_MISSING}") from None
    finally:
        if saved is None:
            os.environ.pop(_PROTOBUF, None)
        else:
            os.environ[_PROTOBUF] = saved
    options.register_custom_ops_library(get_library_path())
