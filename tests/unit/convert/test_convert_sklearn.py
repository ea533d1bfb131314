"""scikit-learn estimators and pipelines to ONNX, checked against predict_proba and predict."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from shipyard.convert import from_estimator, from_sklearn_file, run_onnx
from shipyard.errors import ConversionFailed, NotFound
from shipyard.signature import Scores, TensorSpec


def _onnx(converted: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [spec.name for spec in converted.signature.outputs]
    return dict(zip(names, run_onnx(converted.onnx_bytes, {"input": x}), strict=True))


def test_a_pipeline_gives_the_same_probabilities_and_keeps_its_labels(
    pipeline: Pipeline, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = digits

    converted = from_estimator(pipeline)

    assert converted.framework == "sklearn"
    assert converted.labels == [str(d) for d in range(10)]
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert [spec.name for spec in converted.signature.outputs] == ["label", "probabilities"]
    assert converted.signature.scores == Scores("probabilities", "probabilities")
    assert converted.check.passed and converted.check.source == "generated"
    assert converted.check.samples == 16
    outputs = _onnx(converted, x[:200])
    np.testing.assert_allclose(outputs["probabilities"], pipeline.predict_proba(x[:200]), atol=1e-5)
    np.testing.assert_array_equal(outputs["label"], pipeline.predict(x[:200]))


def test_a_sample_is_recorded_as_user_data(pipeline: Pipeline, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits

    check = from_estimator(pipeline, sample=x[:30].astype(np.float64)).check

    assert check.source == "user data" and check.samples == 30


def test_a_sample_with_the_wrong_width_is_refused(pipeline: Pipeline) -> None:
    with pytest.raises(ConversionFailed, match="sample has 3 features; the estimator was fitted on 64"):
        from_estimator(pipeline, sample=np.zeros((4, 3)))


def test_a_regressor_gives_the_same_predictions(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    regressor = LinearRegression().fit(x, y * 100.0)

    converted = from_estimator(regressor)

    assert converted.labels is None and converted.signature.scores is None
    assert [spec.name for spec in converted.signature.outputs] == ["variable"]
    (predicted,) = _onnx(converted, x[:100]).values()
    np.testing.assert_allclose(predicted.ravel(), regressor.predict(x[:100]), rtol=1e-4)


def test_a_classifier_without_probabilities_is_checked_on_its_decision_scores(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = digits
    classifier = LinearSVC().fit(StandardScaler().fit_transform(x), y > 4)

    converted = from_estimator(classifier)

    assert converted.check.passed
    assert converted.labels == ["False", "True"] and converted.signature.scores is None


def test_an_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ConversionFailed, match="estimator is not fitted"):
        from_estimator(make_pipeline(StandardScaler(), LogisticRegression()))


def test_an_estimator_that_neither_classifies_nor_regresses_is_refused(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    with pytest.raises(ConversionFailed, match="neither a classifier nor a regressor"):
        from_estimator(StandardScaler().fit(digits[0]))


def test_something_that_is_not_an_estimator_is_refused() -> None:
    with pytest.raises(ConversionFailed, match="expected a fitted scikit-learn estimator"):
        from_estimator({"weights": [1, 2, 3]})


def test_joblib_and_pickle_files_convert(pipeline: Pipeline, tmp_path: Path) -> None:
    joblib.dump(pipeline, tmp_path / "model.joblib")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(pipeline))

    for name in ("model.joblib", "model.pkl"):
        converted = from_sklearn_file(tmp_path / name, trusted=True)
        assert converted.labels == [str(d) for d in range(10)] and converted.check.passed


def test_a_file_holding_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)

    with pytest.raises(ConversionFailed, match="holds a dict, not a scikit-learn estimator"):
        from_sklearn_file(path, trusted=True)


def test_a_random_file_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(bytes(range(256)))

    with pytest.raises(ConversionFailed, match="cannot be scanned before loading") as info:
        from_sklearn_file(path, trusted=True)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        from_sklearn_file(tmp_path / "absent.joblib")
