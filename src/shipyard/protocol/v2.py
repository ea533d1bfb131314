"""KServe v2 inference requests and responses over HTTP: JSON tensors and Triton's binary extension.

Decoding goes straight into numpy (``np.frombuffer`` for binary data, one ``np.asarray`` for JSON data)
and validates each tensor against its own declared shape and datatype once. Matching tensors against
a model's signature is the data plane's job: this module knows nothing of models.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from shipyard import scoring
from shipyard.datatypes import numpy_dtype, v2_datatype
from shipyard.errors import InvalidInput
from shipyard.protocol.heads import Heads
from shipyard.signature import format_shape

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 16
_HEADS = Heads()


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: follow the request's binary_data_output
    classification: int = 0  # top-k classes as "score:index:label" strings; 0 = off


@dataclass(slots=True)
class InferenceRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False


@dataclass(slots=True)
class OutputTensor:
    name: str
    data: np.ndarray
    binary: bool = False


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None


def loads(body: bytes | memoryview) -> Any:
    """Parse a JSON body, turning every parser complaint into a 400 that says what was wrong."""
    if not body:
        raise InvalidInput("request body is empty: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def decode_request(body: bytes, header_length: int | None = None) -> InferenceRequest:
    """Decode a v2 infer body; `header_length` is Inference-Header-Content-Length when binary (a
    header seen before is not decoded again: protocol/heads.py)."""
    view = memoryview(body)
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes"
            )
        head, tail = view[:header_length], view[header_length:]
        seen = body[:header_length]
        layout = _HEADS.find(seen, len(tail))
        if layout is not None:
            return InferenceRequest(layout.tensors(tail), layout.id, layout.outputs, layout.binary_output)
        request, sizes = _decode(body, head, tail)
        _HEADS.remember(seen, request, sizes)
        return request
    return _decode(body, view, view[:0])[0]


def _decode(body: bytes, head: memoryview, tail: memoryview) -> tuple[InferenceRequest, list[int]]:
    """A request, and the bytes of binary data of each input (0: given as JSON)."""
    doc = loads(head)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request needs a non-empty 'inputs' list")
    params = _parameters(doc.get("parameters"), "request")
    inputs: dict[str, np.ndarray] = {}
    offset, sizes = 0, []
    for raw in raw_inputs:
        name, array, used = _decode_input(raw, tail, offset, len(body))
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
        sizes.append(used)
    if offset != len(tail):
        raise InvalidInput(f"{len(tail) - offset} bytes of binary data follow no input")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("request 'id' must be a string")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput("parameter 'binary_data_output' must be true or false")
    request = InferenceRequest(
        inputs=inputs,
        id=request_id,
        outputs=_decode_outputs(doc.get("outputs")),
        binary_output=binary_output,
    )
    return request, sizes


def _parameters(value: Any, where: str, name: str | None = None) -> dict[str, Any]:
    """A 'parameters' object of the request (`where`), or of its input or output `name`. The message is
    made only for a refusal: every binary request has a few of these."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{where if name is None else f'{where} {name!r}'} 'parameters' must be a JSON object"
        )
    return value


def check_shape(name: str, shape: list[int], budget: int) -> int:
    """The element count of a declared shape, refused before anything is allocated for it when it could
    not have come in a request of `budget` bytes (every value takes at least one byte on the wire)."""
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise InvalidInput(
            f"input {name!r}: 'shape' must be a list of at most {MAX_DIMS} non-negative integers"
        )
    if math.prod(d for d in shape if d) > max(budget, 1):
        raise InvalidInput(
            f"input {name!r}: shape {format_shape(shape)} holds more values than a request of "
            f"{budget} bytes can carry"
        )
    return math.prod(shape)


def _decode_input(raw: Any, tail: memoryview, offset: int, budget: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(raw, dict):
        raise InvalidInput("each input must be a JSON object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("each input needs a 'name' string")
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input {name!r}: 'datatype' must be a string such as \"FP32\"")
    dtype = input_dtype(name, datatype)
    count = check_shape(name, shape, budget)
    params = _parameters(raw.get("parameters"), "input", name)
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {name!r}: 'binary_data_size' must be a non-negative integer")
        if offset + size > len(tail):
            raise InvalidInput(
                f"input {name!r}: binary_data_size is {size}, but only {len(tail) - offset} "
                "bytes of binary data are left"
            )
        chunk = tail[offset : offset + size]
        return name, decode_raw(name, chunk, dtype, datatype, shape, count), size
    if "data" not in raw:
        raise InvalidInput(f"input {name!r} has no 'data'")
    return name, _from_json(name, raw["data"], dtype, datatype, shape, count), 0


def input_dtype(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of an input's declared datatype, or an error naming the input."""
    try:
        return numpy_dtype(datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"input {name!r}: {exc}") from None


def _from_json(
    name: str, data: Any, dtype: np.dtype, datatype: str, shape: list[int], count: int
) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            flat = [_to_bytes(name, item) for item in _flatten(data)]
            array = np.empty(len(flat), dtype=object)
            array[:] = flat
        else:
            array = np.asarray(data, dtype=dtype)
            if datatype == "BOOL" and not _all_bools(data):
                raise InvalidInput(f"input {name!r}: BOOL data must be true or false")
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {name!r}: data is not a {'nested ' if shape else ''}list of {datatype} values"
        ) from None
    if array.size != count:
        raise InvalidInput(
            f"input {name!r}: shape {format_shape(shape)} needs {count} values, got {array.size}"
        )
    return array.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _all_bools(data: list[Any]) -> bool:
    return all(isinstance(item, bool) for item in _flatten(data))


def _to_bytes(name: str, item: Any) -> bytes:
    if isinstance(item, str):
        return item.encode()
    raise InvalidInput(f"input {name!r}: BYTES data must be strings")


_NATIVE_IS_LITTLE = sys.byteorder == "little"


def _little(dtype: np.dtype) -> np.dtype:
    """`dtype`, little-endian: the wire's byte order (a native dtype already is, on most machines)."""
    return dtype if _NATIVE_IS_LITTLE and dtype.byteorder in "=|" else dtype.newbyteorder("<")


def decode_raw(
    name: str, chunk: memoryview, dtype: np.dtype, datatype: str, shape: list[int], count: int
) -> np.ndarray:
    """Raw tensor bytes (binary extension, gRPC raw contents): little-endian, row-major, no padding;
    BYTES elements each prefixed by a 4-byte little-endian length."""
    if datatype == "BYTES":
        items = _split_bytes(name, chunk)
        if len(items) != count:
            raise InvalidInput(
                f"input {name!r}: shape {format_shape(shape)} needs {count} values, got {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input {name!r}: shape {format_shape(shape)} of {datatype} needs {expected} bytes, "
            f"got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=_little(dtype)).reshape(shape)


def _split_bytes(name: str, chunk: memoryview) -> list[bytes]:
    items, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + length > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES element runs past the data")
        items.append(bytes(chunk[pos : pos + length]))
        pos += length
    return items


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None or value == []:
        return None  # as over gRPC, where an empty list cannot be told from none: every output
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    outputs = []
    for raw in value:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput("each requested output needs a 'name' string")
        name = raw["name"]
        params = _parameters(raw.get("parameters"), "output", name)
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output {name!r}: 'binary_data' must be true or false")
        k = params.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidInput(f"output {name!r}: 'classification' must be a positive integer")
        outputs.append(RequestedOutput(name, binary, k))
    return outputs


def output_tensors(
    request: InferenceRequest, names: list[str], results: list[np.ndarray], labels: list[str] | None
) -> list[OutputTensor]:
    """A run's outputs (`names`, as asked) as the request wants them: binary or JSON, each output's
    own choice over the request's, and top-k classes where it asks for the classification extension."""
    wanted = request.outputs
    outputs = []
    for i, (name, data) in enumerate(zip(names, results, strict=True)):
        requested = wanted[i] if wanted is not None else None
        binary = request.binary_output
        if requested is not None and requested.binary is not None:
            binary = requested.binary
        if requested is not None and requested.classification:
            if data.dtype.kind not in "fiu":
                raise InvalidInput(f"output {name!r} holds no scores to classify")
            data = classify(data, requested.classification, labels)
        outputs.append(OutputTensor(name, data, binary))
    return outputs


def encode_response(response: InferenceResponse) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary outputs follow it (else None)."""
    outputs, blobs = [], []
    for out in response.outputs:
        data = out.data
        item: dict[str, Any] = {
            "name": out.name,
            "datatype": v2_datatype(data.dtype),
            "shape": list(data.shape),
        }
        if out.binary:
            blob = encode_raw(data)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = _to_json_data(data)
        outputs.append(item)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def _to_json_data(data: np.ndarray) -> Any:
    if data.dtype.kind in "OSU":
        return [_to_text(item) for item in data.reshape(-1).tolist()]
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    return np.ascontiguousarray(data).reshape(-1)


def _to_text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def encode_raw(data: np.ndarray) -> bytes:
    """The inverse of decode_raw."""
    if data.dtype.kind in "OSU":
        parts = []
        for item in data.reshape(-1).tolist():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(data, dtype=_little(data.dtype)).tobytes()


def classify(scores: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Triton's classification extension: the top k of each row as b"score:index:label"."""
    rows = scores.reshape(-1, scores.shape[-1]) if scores.ndim > 1 else scores.reshape(1, -1)
    k = min(k, rows.shape[-1])
    top = scoring.top(rows, k)
    out = np.empty(top.shape, dtype=object)
    for r, row in enumerate(top):
        for c, index in enumerate(row):
            text = f"{float(rows[r, index]):f}:{index}"
            if labels is not None and index < len(labels):
                text += f":{labels[index]}"
            out[r, c] = text.encode()
    return out.reshape((*scores.shape[:-1], k)) if scores.ndim > 1 else out.reshape(k)
