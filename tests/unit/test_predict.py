"""The friendly API's decoding and post-processing, alone."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from shipyard.errors import InvalidInput
from shipyard.protocol.predict import decode_predict, predictions
from shipyard.scoring import softmax
from tests.conftest import DIGITS_SIGNATURE


def test_one_sample_gets_a_batch_axis() -> None:
    inputs, single = decode_predict(orjson.dumps({"input": list(range(64))}), DIGITS_SIGNATURE)
    assert single and inputs["input"].shape == (1, 64) and inputs["input"].dtype == np.float32


def test_nested_sample_of_the_right_size_is_accepted() -> None:
    inputs, _ = decode_predict(orjson.dumps({"input": [[0] * 8] * 8}), DIGITS_SIGNATURE)
    assert inputs["input"].shape == (1, 64)


def test_many_samples() -> None:
    inputs, single = decode_predict(orjson.dumps({"inputs": [[0] * 64, [1] * 64]}), DIGITS_SIGNATURE)
    assert not single and inputs["input"].shape == (2, 64)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "for one sample"),
        ({"input": [1], "inputs": [[1]]}, "for one sample"),
        ({"input": [0] * 63}, r"expected shape \[64\], got \[63\]"),
        ({"inputs": []}, "non-empty"),
        ({"inputs": [[0] * 64, [0] * 63]}, r"sample 1: expected shape \[64\]"),
        ({"input": ["x"] * 64}, "lists of numbers"),
    ],
)
def test_bad_bodies(doc: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_predict(orjson.dumps(doc), DIGITS_SIGNATURE)


def test_logits_are_softmaxed_and_labelled() -> None:
    logits = np.array([[0.0, 3.0, 1.0]], dtype=np.float32)
    (item,) = predictions(logits, kind="logits", labels=["cat", "dog", "eel"], top_k=2)
    expected = softmax(logits.astype(np.float64))[0]
    assert item["class"] == "dog"
    assert item["confidence"] == pytest.approx(expected[1], abs=1e-6)
    assert [c["class"] for c in item["top_k"]] == ["dog", "eel"]


def test_probabilities_are_used_as_they_are_and_regressors_pass_through() -> None:
    (item,) = predictions(np.array([[0.2, 0.8]]), kind="probabilities", labels=None)
    assert item == {"class": "1", "confidence": 0.8}
    assert predictions(np.array([[1.5], [2.5]]), kind=None, labels=None) == [
        {"prediction": [1.5]},
        {"prediction": [2.5]},
    ]
