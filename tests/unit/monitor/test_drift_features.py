"""Inputs to features: one float row per sample, with names that stay the same for a model."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import InvalidInput
from shipyard.monitor.features import feature_matrix
from tests.models import digits_data


def test_tabular_columns_are_features_named_after_their_input() -> None:
    X, _ = digits_data()
    names, values = feature_matrix({"x": X[:5]})
    assert names == tuple(f"x[{j}]" for j in range(64))
    assert values.dtype == np.float64 and values.shape == (5, 64)
    np.testing.assert_array_equal(values, X[:5])


def test_several_inputs_come_in_name_order_whatever_the_request_order() -> None:
    a, b = np.arange(6.0).reshape(3, 2), np.array([10, 20, 30], dtype=np.int64)
    first = feature_matrix({"b": b, "a": a})
    second = feature_matrix({"a": a, "b": b})
    assert first.names == second.names == ("a[0]", "a[1]", "b")
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.values[:, 2], [10, 20, 30])


def test_wide_inputs_keep_the_first_columns_and_summarise_the_rest() -> None:
    x = np.arange(2 * 300, dtype=np.float32).reshape(2, 300)
    names, values = feature_matrix({"x": x}, max_columns=256)
    assert len(names) == 256 and names[254] == "x[254]" and names[255] == "x[255:].mean"
    np.testing.assert_array_equal(values[:, :255], x[:, :255])
    np.testing.assert_allclose(values[:, 255], x[:, 255:].mean(axis=1))


def test_images_give_mean_and_std_per_channel_not_pixels() -> None:
    rng = np.random.default_rng(0)
    nchw = rng.random((4, 3, 16, 16)).astype(np.float32)
    names, values = feature_matrix({"img": nchw})
    assert names == tuple(f"img[ch{c}].{stat}" for c in range(3) for stat in ("mean", "std"))
    flat = nchw.reshape(4, 3, -1).astype(np.float64)
    np.testing.assert_allclose(values[:, 0::2], flat.mean(axis=2), rtol=1e-12)
    np.testing.assert_allclose(values[:, 1::2], flat.std(axis=2), rtol=1e-9)


def test_channels_last_images_give_the_same_features() -> None:
    nchw = np.random.default_rng(1).random((4, 3, 16, 16)).astype(np.float32)
    first = feature_matrix({"img": nchw})
    last = feature_matrix({"img": np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))})
    assert first.names == last.names
    np.testing.assert_allclose(first.values, last.values, rtol=1e-9)


def test_one_channel_images_and_images_without_a_channel_axis_are_one_channel() -> None:
    X, _ = digits_data()
    names, values = feature_matrix({"x": X[:6].reshape(6, 1, 8, 8)})
    assert names == ("x.mean", "x.std")
    np.testing.assert_allclose(values[:, 0], X[:6].mean(axis=1, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(values[:, 1], X[:6].std(axis=1, dtype=np.float64), rtol=1e-9)
    names, _ = feature_matrix({"x": np.zeros((2, 8, 8, 8))})  # neither axis 1 nor the last is 1/3/4
    assert names == ("x.mean", "x.std")


def test_constant_images_have_zero_std_not_nan() -> None:
    _, values = feature_matrix({"img": np.full((2, 3, 4, 4), 200.0, dtype=np.float32)})
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values[:, 1::2], 0.0)


def test_strings_are_measured_by_length() -> None:
    texts = np.array([b"a", b"abcd", b""], dtype=object)
    names, values = feature_matrix({"text": texts})
    assert names == ("len(text)",)
    np.testing.assert_array_equal(values[:, 0], [1, 4, 0])
    names, values = feature_matrix({"pair": np.array([["ab", "c"], ["", "xyz"]])})
    assert names == ("len(pair[0])", "len(pair[1])")
    np.testing.assert_array_equal(values, [[2, 1], [0, 3]])


def test_booleans_are_numbers() -> None:
    _, values = feature_matrix({"flags": np.array([[True, False], [False, False]])})
    np.testing.assert_array_equal(values, [[1, 0], [0, 0]])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "no inputs"),
        ({"a": np.zeros((2, 3)), "b": np.zeros(3)}, "different batch sizes"),
        ({"a": np.float32(1.0)}, "no batch axis"),
        ({"a": np.zeros((2, 0))}, "empty samples"),
        ({"a": np.zeros(2, dtype=np.complex64)}, "cannot take features from dtype complex64"),
        ({"a": np.array([1, None], dtype=object)}, "must hold strings or bytes"),
    ],
)
def test_inputs_that_cannot_give_features_are_refused_by_name(inputs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput, match=message):
        feature_matrix(inputs)
