"""One table from KServe v2 datatype names to numpy dtypes and ONNX element types, and back."""

from __future__ import annotations

import numpy as np

from shipyard.errors import InvalidInput

# v2 name -> numpy dtype. BYTES is variable length: numpy object arrays holding bytes.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2: dict[np.dtype, str] = {dtype: name for name, dtype in V2_TO_NUMPY.items()}

# ONNX TensorProto element type -> v2 name (values of onnx.TensorProto.DataType, kept as ints so this
# module needs no onnx import).
ONNX_TO_V2: dict[int, str] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",  # STRING
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
}


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of a v2 datatype name, or InvalidInput naming the unknown type."""
    try:
        return V2_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        known = ", ".join(V2_TO_NUMPY)
        raise InvalidInput(f"unknown datatype {datatype!r}; expected one of {known}") from None


def v2_datatype(dtype: np.dtype) -> str:
    """The v2 datatype name of a numpy dtype (str and bytes arrays count as BYTES)."""
    if dtype.kind in "OUS":
        return "BYTES"
    try:
        return NUMPY_TO_V2[dtype]
    except KeyError:
        raise InvalidInput(f"numpy dtype {dtype} has no KServe v2 datatype") from None
