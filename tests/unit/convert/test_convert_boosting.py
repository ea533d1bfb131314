"""XGBoost, LightGBM and CatBoost models and their files to ONNX, checked against predict_proba and
predict; column names of a model fitted on a DataFrame recorded as the signature's features."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.convert import from_boosting, from_boosting_file, run_onnx
from shipyard.convert.check import Converted
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.importing import import_boosting, import_file
from shipyard.registry import Registry
from shipyard.signature import Scores, TensorSpec

THREADS = 2  # the libraries' default (every core) is slower than this on a small machine running tests


def _outputs(converted: Converted, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [spec.name for spec in converted.signature.outputs]
    return dict(zip(names, run_onnx(converted.onnx_bytes, {"input": x.astype(np.float32)}), strict=True))


@pytest.fixture(scope="module")
def frame() -> Any:
    """Breast cancer data as a DataFrame with named columns, and its targets as names."""
    pytest.importorskip("pandas")
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    return data.data.astype(np.float32), np.where(data.target == 1, "benign", "malignant")


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return x.astype(np.float32), y * 100.0  # large values: the check is relative there


@pytest.fixture(scope="module")
def xgb_classifier(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    xgb = pytest.importorskip("xgboost")
    return xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=THREADS).fit(*digits)


@pytest.fixture(scope="module")
def lgb_classifier(frame: tuple[Any, np.ndarray]) -> Any:
    lgb = pytest.importorskip("lightgbm")
    return lgb.LGBMClassifier(n_estimators=20, num_leaves=8, n_jobs=THREADS, verbose=-1).fit(*frame)


@pytest.fixture(scope="module")
def cat_classifier(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    catboost = pytest.importorskip("catboost")
    model = catboost.CatBoostClassifier(
        iterations=20, depth=4, thread_count=THREADS, verbose=False, allow_writing_files=False
    )
    return model.fit(*digits)


# XGBoost


def test_an_xgboost_classifier_gives_the_same_probabilities(
    xgb_classifier: Any, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = digits

    converted = from_boosting(xgb_classifier, sample=x[:100])

    assert converted.framework == "xgboost"
    assert converted.labels == [str(d) for d in range(10)]
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert [(s.name, s.datatype, s.shape) for s in converted.signature.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 10)),
    ]
    assert converted.signature.scores == Scores("probabilities", "probabilities")
    assert converted.signature.features is None  # fitted on an array: no column names
    check = converted.check
    assert check.passed and check.source == "user data" and check.samples == 100
    assert check.max_abs_diff is not None and check.max_abs_diff <= 1e-6
    outputs = _outputs(converted, x)
    np.testing.assert_allclose(outputs["probabilities"], xgb_classifier.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(outputs["label"], xgb_classifier.predict(x))


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_an_xgboost_file_converts_without_trust(
    xgb_classifier: Any, digits: tuple[np.ndarray, np.ndarray], tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    xgb_classifier.save_model(path)
    x, _ = digits

    converted = from_boosting_file(path, "xgboost")

    assert converted.labels == [str(d) for d in range(10)] and converted.check.source == "generated"
    np.testing.assert_allclose(
        _outputs(converted, x)["probabilities"], xgb_classifier.predict_proba(x), atol=1e-6
    )


def test_an_xgboost_booster_and_a_regressor_convert(
    xgb_classifier: Any, diabetes: tuple[np.ndarray, np.ndarray]
) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = diabetes
    regressor = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=THREADS).fit(x, y)

    booster = from_boosting(xgb_classifier.get_booster())
    converted = from_boosting(regressor, sample=x)

    assert booster.check.passed and booster.labels == [str(d) for d in range(10)]
    assert converted.labels is None and converted.signature.scores is None
    assert [(s.name, s.shape) for s in converted.signature.outputs] == [("variable", (-1, 1))]
    (predicted,) = _outputs(converted, x).values()
    np.testing.assert_allclose(predicted.ravel(), regressor.predict(x), rtol=1e-5)


def test_an_xgboost_model_stopped_early_converts_the_trees_it_predicts_with(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = digits
    model = xgb.XGBClassifier(n_estimators=60, max_depth=3, n_jobs=THREADS, early_stopping_rounds=2)
    model.fit(x[:1200], y[:1200], eval_set=[(x[1200:], y[1200:])], verbose=False)
    assert model.best_iteration < 59  # it did stop early

    converted = from_boosting(model, sample=x[1200:])

    np.testing.assert_allclose(_outputs(converted, x)["probabilities"], model.predict_proba(x), atol=1e-6)


def test_column_names_are_recorded_as_features(frame: tuple[Any, np.ndarray]) -> None:
    xgb = pytest.importorskip("xgboost")
    data, target = frame
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=THREADS).fit(data, target == "benign")

    converted = from_boosting(model, sample=data.to_numpy())

    assert converted.signature.features == tuple(data.columns)
    assert converted.labels == ["0", "1"]
    np.testing.assert_allclose(
        _outputs(converted, data.to_numpy())["probabilities"], model.predict_proba(data), atol=1e-6
    )


# LightGBM


def test_a_lightgbm_classifier_keeps_its_classes_and_columns(
    lgb_classifier: Any, frame: tuple[Any, np.ndarray]
) -> None:
    data, _ = frame

    converted = from_boosting(lgb_classifier, sample=data)

    assert converted.framework == "lightgbm"
    assert converted.labels == ["benign", "malignant"]
    assert converted.signature.features == tuple(lgb_classifier.booster_.feature_name())
    assert converted.signature.features[0] == "mean_radius"  # LightGBM's own spelling of the column
    assert converted.signature.scores == Scores("probabilities", "probabilities")
    outputs = _outputs(converted, data.to_numpy())
    np.testing.assert_allclose(outputs["probabilities"], lgb_classifier.predict_proba(data), atol=1e-6)
    np.testing.assert_array_equal(outputs["label"], lgb_classifier.predict(data))


def test_a_lightgbm_model_file_converts_and_keeps_its_columns(
    lgb_classifier: Any, frame: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "model.txt"
    lgb_classifier.booster_.save_model(path)
    data, _ = frame

    converted = from_boosting_file(path, "lightgbm", sample=data.to_numpy()[:50])

    assert converted.labels == ["0", "1"]  # the booster alone knows its classes by number
    assert converted.signature.features == tuple(lgb_classifier.booster_.feature_name())
    np.testing.assert_allclose(
        _outputs(converted, data.to_numpy())["probabilities"], lgb_classifier.predict_proba(data), atol=1e-6
    )


def test_a_lightgbm_model_fitted_on_an_array_has_no_features(diabetes: tuple[np.ndarray, np.ndarray]) -> None:
    lgb = pytest.importorskip("lightgbm")
    x, y = diabetes
    regressor = lgb.LGBMRegressor(n_estimators=20, num_leaves=8, n_jobs=THREADS, verbose=-1).fit(x, y)

    converted = from_boosting(regressor, sample=x)

    assert converted.signature.features is None  # Column_0, Column_1, ... are LightGBM's, not names
    (predicted,) = _outputs(converted, x).values()
    np.testing.assert_allclose(predicted.ravel(), regressor.predict(x), rtol=1e-5)


# CatBoost


def test_a_catboost_classifier_and_its_file_convert(
    cat_classifier: Any, digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _ = digits
    path = tmp_path / "model.cbm"
    cat_classifier.save_model(str(path))

    converted = from_boosting(cat_classifier, sample=x[:100])
    from_file = from_boosting_file(path, "catboost", sample=x[:100])

    assert converted.framework == "catboost" and converted.labels == [str(d) for d in range(10)]
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert [(s.name, s.shape) for s in converted.signature.outputs] == [
        ("label", (-1,)),
        ("probabilities", (-1, 10)),
    ]
    assert converted.signature.scores == Scores("probabilities", "probabilities")
    expected = cat_classifier.predict_proba(x)
    np.testing.assert_allclose(_outputs(converted, x)["probabilities"], expected, atol=1e-6)
    np.testing.assert_allclose(_outputs(from_file, x)["probabilities"], expected, atol=1e-6)


def test_a_catboost_regressor_on_named_columns_converts(frame: tuple[Any, np.ndarray]) -> None:
    catboost = pytest.importorskip("catboost")
    data, _ = frame
    regressor = catboost.CatBoostRegressor(
        iterations=20, depth=4, thread_count=THREADS, verbose=False, allow_writing_files=False
    ).fit(data, data["mean area"] * 2.0)

    converted = from_boosting(regressor, sample=data.to_numpy())

    assert converted.labels is None and converted.signature.scores is None
    assert converted.signature.features == tuple(data.columns)
    (predicted,) = _outputs(converted, data.to_numpy()).values()
    np.testing.assert_allclose(predicted.ravel(), regressor.predict(data), rtol=1e-5)


def test_a_catboost_model_with_categorical_features_is_refused_with_catboosts_reason(
    frame: tuple[Any, np.ndarray],
) -> None:
    catboost = pytest.importorskip("catboost")
    data, target = frame
    kinds = data.assign(kind=np.where(data["mean area"] > 600, "large", "small"))[["mean area", "kind"]]
    model = catboost.CatBoostClassifier(
        iterations=5, thread_count=THREADS, verbose=False, allow_writing_files=False, cat_features=["kind"]
    ).fit(kinds, target)

    with pytest.raises(ConversionFailed, match=r"cannot be converted to ONNX: .*categorical features$"):
        from_boosting(model)


# The import path


def test_import_boosting_registers_labels_and_features(
    registry: Registry, lgb_classifier: Any, frame: tuple[Any, np.ndarray]
) -> None:
    record = import_boosting(lgb_classifier, name="cancer", sample=frame[0].to_numpy(), registry=registry)

    assert (record.framework, record.labels) == ("lightgbm", ["benign", "malignant"])
    assert record.signature.features is not None and len(record.signature.features) == 30
    assert registry.version("cancer").signature.features == record.signature.features
    assert record.check["passed"] and record.check["source"] == "user data"


def test_the_cli_import_tells_xgboost_and_catboost_files_by_suffix(
    registry: Registry, xgb_classifier: Any, cat_classifier: Any, tmp_path: Path
) -> None:
    xgb_classifier.save_model(tmp_path / "model.ubj")
    xgb_classifier.save_model(tmp_path / "model.json")
    cat_classifier.save_model(str(tmp_path / "model.cbm"))

    ubj = import_file(tmp_path / "model.ubj", name="xgb", registry=registry)
    again = import_file(tmp_path / "model.ubj", name="xgb", registry=registry)
    told = import_file(tmp_path / "model.json", name="told", framework="xgboost", registry=registry)
    cbm = import_file(tmp_path / "model.cbm", name="cat", registry=registry)

    assert (ubj.framework, told.framework, cbm.framework) == ("xgboost", "xgboost", "catboost")
    assert again.number == ubj.number  # the same file again adds no version
    assert import_boosting(tmp_path / "model.cbm", name="cat", registry=registry).framework == "catboost"


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_a_json_or_text_file_needs_the_framework_told(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_text("{}")

    with pytest.raises(InvalidInput, match="say which with --framework xgboost or --framework lightgbm"):
        import_file(path, name="model")


@pytest.mark.parametrize(
    ("framework", "problem"),
    [
        ("xgboost", "model.bin is not an XGBoost model saved with save_model"),
        ("lightgbm", "model.bin is not a LightGBM model file"),
        ("catboost", r"model.bin is not a CatBoost model \(.cbm\)"),
    ],
)
def test_a_bad_file_is_refused_with_one_line(tmp_path: Path, framework: str, problem: str) -> None:
    pytest.importorskip(framework)
    path = tmp_path / "model.bin"
    path.write_bytes(b"garbage that no library reads\n" * 4)

    with pytest.raises(ConversionFailed, match=problem) as info:
        from_boosting_file(path, framework)
    assert "\n" not in str(info.value)


def test_a_missing_file_and_an_unknown_framework_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        from_boosting_file(tmp_path / "absent.ubj", "xgboost")
    with pytest.raises(InvalidInput, match="'sklearn' is not a gradient-boosting framework"):
        from_boosting_file(tmp_path / "absent.ubj", "sklearn")
    with pytest.raises(ConversionFailed, match="expected an XGBoost, LightGBM or CatBoost model, got dict"):
        from_boosting({"trees": []})


@pytest.mark.parametrize(
    ("module", "estimator"),
    [("xgboost", "XGBClassifier"), ("lightgbm", "LGBMRegressor"), ("catboost", "CatBoostClassifier")],
)
def test_an_unfitted_model_is_refused(module: str, estimator: str) -> None:
    unfitted = getattr(pytest.importorskip(module), estimator)()

    with pytest.raises(ConversionFailed, match=f"{estimator} is not fitted: call {estimator}.fit"):
        from_boosting(unfitted)


def test_a_sample_of_the_wrong_width_is_refused(xgb_classifier: Any) -> None:
    with pytest.raises(ConversionFailed, match="sample has 3 features; the XGBClassifier takes 64"):
        from_boosting(xgb_classifier, sample=np.zeros((4, 3)))


def test_a_missing_library_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(
        sys.modules, "onnxmltools", None
    )  # what `import onnxmltools` meets when not installed
    (tmp_path / "model.ubj").write_bytes(b"{}")

    with pytest.raises(
        ConversionFailed, match=r"XGBoost is not installed: pip install 'shipyard\[xgboost\]'"
    ):
        from_boosting_file(tmp_path / "model.ubj", "xgboost")
