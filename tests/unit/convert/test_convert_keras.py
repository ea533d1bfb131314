"""Keras models, .keras files and TensorFlow SavedModel folders to ONNX, checked against the model.

TensorFlow takes seconds to import and trace: the models are built once per module."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.convert import from_keras, from_keras_file, run_onnx
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.importing import import_file, import_keras
from shipyard.registry import Registry
from shipyard.signature import Scores, TensorSpec

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


def _saved(save: Any, *args: Any, **kwargs: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Keras 3 on numpy 2 warns as it saves
        save(*args, **kwargs)


@pytest.fixture(scope="module")
def pixels(digits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits
    return x / 16.0, y


@pytest.fixture(scope="module")
def softmax_model(pixels: tuple[np.ndarray, np.ndarray]) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(*pixels, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def logits_model() -> Any:
    keras.utils.set_random_seed(1)
    pixels = keras.Input((64,), name="pixels")
    hidden = keras.layers.Dense(16, activation="relu")(pixels)
    return keras.Model(pixels, keras.layers.Dense(10, name="logits")(hidden))


@pytest.fixture(scope="module")
def keras_file(softmax_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "digits.keras"
    _saved(softmax_model.save, path)
    return path


@pytest.fixture(scope="module")
def saved_model(softmax_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tf") / "digits"
    _saved(softmax_model.export, str(path), verbose=False)
    return path


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x.astype(np.float32), training=False))


def _onnx(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    (out,) = run_onnx(onnx_bytes, {"input": x.astype(np.float32)})
    return out


def test_a_softmax_model_gives_the_same_probabilities_on_any_batch(
    softmax_model: Any, pixels: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = pixels

    converted = from_keras(softmax_model, sample=x[:64])

    assert converted.framework == "keras" and converted.labels is None
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert [(spec.name, spec.shape) for spec in converted.signature.outputs] == [("output", (-1, 10))]
    assert converted.signature.scores == Scores("output", "probabilities")
    check = converted.check
    assert check.passed and check.source == "user data" and check.samples == 64
    assert check.max_abs_diff is not None and check.max_abs_diff <= 1e-6
    for rows in (3, 300):
        np.testing.assert_allclose(
            _onnx(converted.onnx_bytes, x[:rows]), _predict(softmax_model, x[:rows]), atol=1e-6
        )


def test_a_functional_model_keeps_its_output_name_and_its_logits(
    logits_model: Any, pixels: tuple[np.ndarray, np.ndarray]
) -> None:
    converted = from_keras(logits_model)

    assert [spec.name for spec in converted.signature.outputs] == ["logits"]
    assert converted.signature.scores == Scores("logits", "logits")
    assert converted.check.source == "generated" and converted.check.samples == 8
    x = pixels[0][:50]
    np.testing.assert_allclose(_onnx(converted.onnx_bytes, x), _predict(logits_model, x), atol=1e-5)


def test_a_model_of_several_inputs_and_outputs_keeps_their_names() -> None:
    image, meta = keras.Input((4,), name="image"), keras.Input((3,), name="meta")
    joined = keras.layers.Concatenate()([image, meta])
    model = keras.Model(
        [image, meta], [keras.layers.Dense(2, name="kind")(joined), keras.layers.Dense(1)(meta)]
    )

    converted = from_keras(model)

    assert [spec.name for spec in converted.signature.inputs] == ["image", "meta"]
    assert len(converted.signature.outputs) == 2 and converted.check.passed


def test_a_keras_file_loads_in_safe_mode_and_converts_to_the_same_model(
    keras_file: Path, softmax_model: Any, pixels: tuple[np.ndarray, np.ndarray]
) -> None:
    converted = from_keras_file(keras_file)

    assert converted.framework == "keras" and converted.check.passed
    x = pixels[0][:100]
    np.testing.assert_allclose(_onnx(converted.onnx_bytes, x), _predict(softmax_model, x), atol=1e-6)
    assert from_keras_file(keras_file).onnx_bytes == converted.onnx_bytes  # the same bytes each time


def test_a_saved_model_folder_is_imported_from_tensorflow(
    saved_model: Path, softmax_model: Any, pixels: tuple[np.ndarray, np.ndarray]
) -> None:
    x = pixels[0]

    converted = from_keras_file(saved_model, sample=x[:32])

    assert converted.framework == "tensorflow"
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert converted.signature.scores is not None and converted.signature.scores.kind == "probabilities"
    assert converted.check.source == "user data" and converted.check.samples == 32
    np.testing.assert_allclose(
        _onnx(converted.onnx_bytes, x[:100]), _predict(softmax_model, x[:100]), atol=1e-6
    )


def test_import_keras_registers_an_object_a_file_and_a_folder(
    registry: Registry, softmax_model: Any, keras_file: Path, saved_model: Path
) -> None:
    labels = [str(d) for d in range(10)]

    record = import_keras(softmax_model, name="mlp", labels=labels, registry=registry)
    from_file = import_keras(keras_file, name="mlp", registry=registry)
    with pytest.raises(InvalidInput, match="SavedModel: checking it runs its graph"):
        import_keras(str(saved_model), name="mlp", registry=registry)
    from_folder = import_keras(str(saved_model), name="mlp", registry=registry, trusted=True)

    assert (record.number, record.framework, record.labels) == (1, "keras", labels)
    assert record.check["passed"] and record.check["source"] == "generated"
    assert (from_file.number, from_file.framework) == (2, "keras")
    assert (from_folder.number, from_folder.framework) == (3, "tensorflow")


def test_the_cli_import_tells_a_keras_file_and_a_saved_model_folder(
    registry: Registry, keras_file: Path, saved_model: Path
) -> None:
    by_suffix = import_file(keras_file, name="digits", registry=registry)
    with pytest.raises(InvalidInput, match="only with --trust"):
        import_file(saved_model, name="folder", registry=registry)
    folder = import_file(saved_model, name="folder", registry=registry, trusted=True)
    again = import_file(keras_file, name="digits", registry=registry)

    assert (by_suffix.framework, folder.framework) == ("keras", "tensorflow")
    assert again.number == by_suffix.number  # the same file again adds no version


def test_a_folder_without_a_saved_model_or_told_another_framework_is_refused(
    tmp_path: Path, saved_model: Path
) -> None:
    with pytest.raises(InvalidInput, match="is a folder: a model is a file"):
        import_file(tmp_path, name="x")
    with pytest.raises(
        InvalidInput, match="is a TensorFlow SavedModel folder: --framework onnx does not read it"
    ):
        import_file(saved_model, name="x", framework="onnx")
    with pytest.raises(ConversionFailed, match=r"without saved_model\.pb"):
        from_keras_file(tmp_path)


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0)])
    path = tmp_path / "lambda.keras"
    _saved(model.save, path)

    with pytest.raises(ConversionFailed, match=r"holds Python code \(a Lambda layer\)"):
        from_keras_file(path)


def test_a_file_that_is_not_a_keras_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"not a zip archive")

    with pytest.raises(ConversionFailed, match=r"model\.keras is neither a \.keras file") as info:
        from_keras_file(path)
    assert "\n" not in str(info.value)
    with pytest.raises(NotFound, match="no such file"):
        from_keras_file(tmp_path / "absent.keras")


def test_a_model_without_known_inputs_is_refused() -> None:
    with pytest.raises(ConversionFailed, match="has no known inputs"):
        from_keras(keras.Sequential([keras.layers.Dense(3)]))
    with pytest.raises(ConversionFailed, match=r"expected a keras\.Model, got dict"):
        from_keras({"weights": [1, 2]})


def test_a_missing_tensorflow_is_named(monkeypatch: pytest.MonkeyPatch, keras_file: Path) -> None:
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what `import tf2onnx` meets when not installed

    with pytest.raises(
        ConversionFailed, match=r"TensorFlow is not installed: pip install 'shipyard\[tensorflow\]'"
    ):
        from_keras_file(keras_file)
