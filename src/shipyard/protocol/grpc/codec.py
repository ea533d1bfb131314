"""The only module that touches protobuf messages: ModelInferRequest in, ModelInferResponse out.

Inputs arrive either as typed contents (``fp32_contents``, ...) or as ``raw_input_contents`` (bytes
decoded with ``np.frombuffer``, as the binary HTTP extension does). The response answers in kind: raw
outputs for raw inputs, typed contents otherwise, so every client finds what it sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.datatypes import v2_datatype
from shipyard.errors import InvalidInput
from shipyard.protocol.grpc import messages as pb
from shipyard.protocol.v2 import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    check_shape,
    decode_raw,
    encode_raw,
    input_dtype,
)
from shipyard.signature import format_shape

# v2 datatype -> the InferTensorContents field that carries it (FP16 travels only as raw bytes).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameter_value(param: Any) -> Any:
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def decode_infer(message: Any) -> tuple[InferenceRequest, bool]:
    """The request, and whether its inputs came as raw bytes (so outputs should too)."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs")
    if not message.inputs:
        raise InvalidInput("request needs at least one input")
    inputs: dict[str, np.ndarray] = {}
    budget = message.ByteSize()
    for i, tensor in enumerate(message.inputs):
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = _decode_input(tensor, raw[i] if raw else None, budget)
    outputs = None
    if message.outputs:
        outputs = []
        for out in message.outputs:
            k = parameter_value(out.parameters["classification"]) if "classification" in out.parameters else 0
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise InvalidInput(f"output {out.name!r}: 'classification' must be a positive integer")
            outputs.append(RequestedOutput(out.name, None, k))
    return InferenceRequest(inputs, message.id or None, outputs, False), bool(raw)


def _decode_input(tensor: Any, raw: bytes | None, budget: int) -> np.ndarray:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    count = check_shape(name, shape, budget)
    dtype = input_dtype(name, datatype)
    if raw is not None:
        return decode_raw(name, memoryview(raw), dtype, datatype, shape, count)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} data must be sent as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: shape {format_shape(shape)} needs {count} values, got {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return np.asarray(values, dtype=dtype).reshape(shape)
    except OverflowError:
        raise InvalidInput(f"input {name!r}: a value does not fit in {datatype}") from None


def encode_infer(response: InferenceResponse, raw: bool) -> Any:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for key, value in (response.parameters or {}).items():
        message.parameters[key].string_param = str(value)
    for out in response.outputs:
        data = out.data
        datatype = v2_datatype(data.dtype)
        tensor = message.outputs.add(name=out.name, datatype=datatype, shape=list(data.shape))
        if raw or datatype == "FP16":
            message.raw_output_contents.append(encode_raw(data))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                item if isinstance(item, bytes) else str(item).encode() for item in data.reshape(-1).tolist()
            )
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(data.reshape(-1).tolist())
    return message


def encode_config(config: dict[str, Any]) -> Any:
    """Triton's model configuration, from the data plane's JSON form of it."""
    message = pb.ModelConfig(
        name=config["name"],
        platform=config["platform"],
        backend=config["backend"],
        max_batch_size=config["max_batch_size"],
        input=[
            pb.ModelInput(name=t["name"], data_type=t["data_type"], dims=t["dims"]) for t in config["input"]
        ],
        output=[
            pb.ModelOutput(name=t["name"], data_type=t["data_type"], dims=t["dims"]) for t in config["output"]
        ],
        instance_group=[pb.ModelInstanceGroup(**group) for group in config["instance_group"]],
        version_policy=pb.ModelVersionPolicy(all=pb.ModelVersionPolicy.All()),
    )
    if "dynamic_batching" in config:
        message.dynamic_batching.CopyFrom(pb.ModelDynamicBatching(**config["dynamic_batching"]))
    return pb.ModelConfigResponse(config=message)
