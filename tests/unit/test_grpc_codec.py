"""The gRPC converter alone: protobuf messages to numpy and back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.errors import InvalidInput
from shipyard.protocol.grpc import codec
from shipyard.protocol.grpc import messages as pb
from shipyard.protocol.v2 import InferenceResponse, OutputTensor, encode_raw


def test_typed_contents_for_every_datatype() -> None:
    message = pb.ModelInferRequest(model_name="m", id="x")
    values = {
        "BOOL": [True, False],
        "INT32": [1, -2],
        "INT64": [2**40, 1],
        "UINT8": [0, 255],
        "FP32": [0.5, 1.5],
        "FP64": [0.25, 2.5],
        "BYTES": [b"a", b""],
    }
    for datatype, data in values.items():
        tensor = message.inputs.add(name=datatype.lower(), datatype=datatype, shape=[2])
        getattr(tensor.contents, codec.CONTENTS_FIELD[datatype]).extend(data)
    request, raw = codec.decode_infer(message)
    assert not raw and request.id == "x"
    for datatype, data in values.items():
        assert request.inputs[datatype.lower()].tolist() == data


def test_raw_contents_and_raw_answers() -> None:
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP16", shape=[2, 3])
    message.raw_input_contents.append(encode_raw(x))
    request, raw = codec.decode_infer(message)
    assert raw
    np.testing.assert_array_equal(request.inputs["x"], x)
    response = codec.encode_infer(InferenceResponse("m", "1", [OutputTensor("y", x)]), raw=True)
    assert response.raw_output_contents[0] == x.tobytes() and list(response.outputs[0].shape) == [2, 3]


def test_typed_answers_when_the_request_was_typed() -> None:
    y = np.array([[1.5, 2.5]], np.float32)
    labels = np.array([b"cat"], dtype=object)
    response = codec.encode_infer(
        InferenceResponse("m", "1", [OutputTensor("y", y), OutputTensor("l", labels)], id="7"), raw=False
    )
    assert list(response.outputs[0].contents.fp32_contents) == [1.5, 2.5]
    assert list(response.outputs[1].contents.bytes_contents) == [b"cat"]
    assert response.id == "7" and not response.raw_output_contents


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: None, "at least one input"),
        (
            lambda m: m.inputs.add(name="x", datatype="FP32", shape=[3]).contents.fp32_contents.extend([1]),
            "needs 3 values",
        ),
        (lambda m: m.inputs.add(name="x", datatype="FP99", shape=[1]), "unknown datatype"),
        (lambda m: m.inputs.add(name="x", datatype="FP16", shape=[1]), "raw_input_contents"),
        (
            lambda m: (
                m.inputs.add(name="x", datatype="FP32", shape=[1]),
                m.raw_input_contents.extend([b"", b""]),
            ),
            "2 raw",
        ),
        (
            lambda m: (
                m.inputs.add(name="x", datatype="FP32", shape=[0, 4611686018427387904]),
                m.raw_input_contents.append(b""),
            ),
            "more values than a request",
        ),
        (lambda m: m.inputs.add(name="x", datatype="FP32", shape=[2**40, 2**40]), "more values than"),
        (lambda m: m.inputs.add(name="x", datatype="FP32", shape=[1] * 17), "at most 16"),
    ],
)
def test_bad_messages(build: object, message: str) -> None:
    request = pb.ModelInferRequest(model_name="m")
    build(request)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message):
        codec.decode_infer(request)


def test_shares_a_process_with_tritons_client() -> None:
    """Both define the `inference` package; shipyard's private descriptor pool keeps them apart."""
    from tritonclient.grpc import service_pb2

    theirs = service_pb2.ModelInferRequest(model_name="m", id="1")
    ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    assert (ours.model_name, ours.id) == ("m", "1")


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.sampled_from([0, 1, 2, 64, 2**31, 2**62, 4611686018427387904]), max_size=4),
    datatype=st.sampled_from(["FP32", "FP16", "INT64", "BOOL", "BYTES", "UINT8", "nope", ""]),
    raw=st.none() | st.binary(max_size=64),
    floats=st.lists(st.floats(width=32), max_size=8),
    outputs=st.lists(st.text(max_size=4), max_size=2),
)
def test_fuzzed_messages_are_decoded_or_refused_with_a_clear_error(
    shape: list[int], datatype: str, raw: bytes | None, floats: list[float], outputs: list[str]
) -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    tensor.contents.fp32_contents.extend(floats)
    if raw is not None:
        request.raw_input_contents.append(raw)
    for name in outputs:
        request.outputs.add(name=name)
    try:
        decoded, _ = codec.decode_infer(request)
    except InvalidInput as exc:
        assert str(exc)
    else:
        assert decoded.inputs["x"].size <= 64 * 8
