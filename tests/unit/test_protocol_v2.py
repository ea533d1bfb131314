"""The v2 codec alone: bytes in, numpy out, and back, with a clear error for every malformed body."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from shipyard.errors import InvalidInput
from shipyard.protocol import heads, v2
from shipyard.protocol.v2 import (
    InferenceResponse,
    OutputTensor,
    classify,
    decode_request,
    encode_response,
)
from tests.bodies import binary_request


def body(*inputs: dict, **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def test_flat_and_nested_data_decode_alike() -> None:
    flat = decode_request(body({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}))
    nested = decode_request(
        body({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]})
    )
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32 and flat.inputs["x"].shape == (2, 2)


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("FP64", [1.5, 2.5], np.float64),
        ("INT32", [1, -2], np.int32),
        ("INT64", [1, 2**40], np.int64),
        ("BOOL", [True, False], np.bool_),
        ("UINT8", [0, 255], np.uint8),
    ],
)
def test_datatypes(datatype: str, data: list, dtype: type) -> None:
    request = decode_request(body({"name": "x", "shape": [2], "datatype": datatype, "data": data}))
    assert request.inputs["x"].dtype == dtype
    assert request.inputs["x"].tolist() == data


def test_bytes_are_object_arrays_of_bytes() -> None:
    request = decode_request(body({"name": "s", "shape": [1, 2], "datatype": "BYTES", "data": [["a", "é"]]}))
    assert request.inputs["s"].tolist() == [[b"a", "é".encode()]]


def test_binary_inputs_are_read_from_after_the_header() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b""))
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
                {
                    "name": "s",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(strings)},
                },
            ]
        }
    )
    request = decode_request(head + x.tobytes() + strings, len(head))
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert request.inputs["s"].tolist() == [b"ab", b""]


def test_outputs_parameters_and_id() -> None:
    request = decode_request(
        body(
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
            id="req-1",
            outputs=[{"name": "y", "parameters": {"classification": 3, "binary_data": True}}],
            parameters={"binary_data_output": True},
        )
    )
    assert request.id == "req-1" and request.binary_output
    assert request.outputs is not None
    assert (request.outputs[0].name, request.outputs[0].classification, request.outputs[0].binary) == (
        "y",
        3,
        True,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "request body is empty"),
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "non-empty 'inputs'"),
        (
            body({"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}),
            r"shape \[2\] needs 2 values, got 1",
        ),
        (body({"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}), "unknown datatype 'FP99'"),
        (body({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}), "non-negative integers"),
        (body({"name": "x", "shape": [1], "datatype": "FP32"}), "has no 'data'"),
        (body({"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}), "FP32 values"),
        (body({"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}), "FP32 values"),
        (body({"name": "x", "shape": [1], "datatype": "BOOL", "data": [3]}), "true or false"),
        (body({"name": "x", "shape": [1], "datatype": "BYTES", "data": [3]}), "must be strings"),
        (body({"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}, id=3), "'id' must be a string"),
        (
            body(
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
            ),
            "given twice",
        ),
    ],
)
def test_malformed_requests_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(raw)


def test_binary_size_mismatches_are_refused() -> None:
    head = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    )
    with pytest.raises(InvalidInput, match="only 4 bytes"):
        decode_request(head + b"\x00" * 4, len(head))
    with pytest.raises(InvalidInput, match="4 bytes of binary data follow no input"):
        decode_request(head + b"\x00" * 12, len(head))
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        decode_request(head, len(head) + 1)


def test_encode_json_and_binary() -> None:
    y = np.array([[0.5, 1.5]], dtype=np.float32)
    labels = np.array([b"cat"], dtype=object)
    content, header = encode_response(
        InferenceResponse("m", "1", [OutputTensor("y", y), OutputTensor("l", labels)], id="7")
    )
    assert header is None
    doc = orjson.loads(content)
    assert doc == {
        "model_name": "m",
        "model_version": "1",
        "id": "7",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]},
            {"name": "l", "datatype": "BYTES", "shape": [1], "data": ["cat"]},
        ],
    }
    content, header = encode_response(InferenceResponse("m", "1", [OutputTensor("y", y, binary=True)]))
    assert header is not None
    doc = orjson.loads(content[:header])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(content[header:], np.float32), y.ravel())


def test_classify_matches_triton_format() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    out = classify(scores, 2, ["a", "b", "c"])
    assert out.shape == (2, 2)
    assert out.tolist() == [[b"0.700000:1:b", b"0.200000:2:c"], [b"0.500000:0:a", b"0.300000:2:c"]]
    assert classify(scores[0], 1, None).tolist() == [b"0.700000:1"]


def binary(values: np.ndarray, **extra: object) -> tuple[bytes, int]:
    """A binary request of one FP32 input `x` asking for output `y` in binary, and its header length."""
    return binary_request(values, outputs=[{"name": "y", "parameters": {"binary_data": True}}], **extra)


def test_a_header_seen_before_gives_each_body_its_own_tensors() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3):  # the first decodes the header; the others find it remembered
        values = rng.random((2, 3), dtype=np.float32)
        request = decode_request(*binary(values, id="same"))
        np.testing.assert_array_equal(request.inputs["x"], values)
        assert request.id == "same" and request.outputs is not None and request.outputs[0].binary


def test_a_header_seen_before_with_other_data_after_it_is_refused_as_ever() -> None:
    good, length = binary(np.ones((2, 3), np.float32))
    decode_request(good, length)
    with pytest.raises(InvalidInput, match="4 bytes of binary data follow no input"):
        decode_request(good + b"\0" * 4, length)
    with pytest.raises(InvalidInput, match="only 20 bytes of binary data are left"):
        decode_request(good[:-4], length)


def test_headers_are_remembered_within_a_bound_and_only_when_their_data_follows_them() -> None:
    remembered = v2._HEADS._layouts
    before = len(remembered)
    decode_request(body({"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}), None)
    mixed = orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
    decode_request(mixed, len(mixed))  # its values are in the header: never remembered
    assert len(remembered) == before
    for i in range(heads.KEEP + 10):  # a client sending a new header every time
        decode_request(*binary(np.ones((1, 1), np.float32), id=str(i)))
    assert len(remembered) == heads.KEEP
