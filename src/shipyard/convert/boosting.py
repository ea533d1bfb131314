"""Convert gradient-boosted trees (XGBoost, LightGBM, CatBoost) to ONNX, and prove both give the same
numbers.

XGBoost and LightGBM models go through onnxmltools' converters, CatBoost models through CatBoost's
own ONNX export. Their files (XGBoost's .json or .ubj from save_model, LightGBM's text from
Booster.save_model, CatBoost's .cbm) hold trees as data, not pickles: loading one runs no code from
it, so they need no --trust. Each library is an optional extra, imported only inside the functions
here. The graph takes one float32 tensor "input" [-1, features]; a classifier's probabilities are a
[batch, classes] tensor "probabilities".
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import onnx

from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    Converted,
    first_line,
    require_close,
    run_onnx,
    signature_of,
)
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.signature import Scores

Boosting = Literal["xgboost", "lightgbm", "catboost"]
FRAMEWORKS: tuple[Boosting, ...] = get_args(Boosting)
OPSET = 15  # the newest onnxmltools' converters write; tree ensembles need nothing newer
INPUT_NAME = "input"
PROBABILITIES = "probabilities"
CHECK_ROWS = 16
_EXTRA: dict[Boosting, tuple[str, tuple[str, ...]]] = {
    "xgboost": ("XGBoost", ("xgboost", "onnxmltools")),
    "lightgbm": ("LightGBM", ("lightgbm", "onnxmltools")),
    "catboost": ("CatBoost", ("catboost",)),
}
_XGBOOST_CLASSES = ("binary:", "multi:")
_LIGHTGBM_CLASSES = frozenset({"binary", "multiclass", "multiclassova"})
_CATBOOST_CLASSES = frozenset({"Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"})
# where in its C++ sources a library raised: "[14:22:07] src/c_api/c_api.cc:1532: " (XGBoost),
# "catboost/libs/model/model.cpp:1185: " (CatBoost)
_SOURCE_LINE = re.compile(r"^(\[[\d:]+\] )?\S+\.\w+:\d+: ")


@dataclass(frozen=True)
class _Trees:
    """A model made ready to convert: what it is, and how to predict with it and export it."""

    framework: Boosting
    kind: str  # its type's name, for messages
    classifier: bool
    n_features: int
    features: list[str] | None  # real column names; None for a model fitted without them
    labels: list[str] | None
    predict: Callable[[Array], Any]  # probabilities [n, classes] for a classifier, else predictions
    export: Callable[[], onnx.ModelProto]


def framework_of(model: Any) -> Boosting:
    """The library a model object comes from, told by its type (or a base type's) module."""
    for cls in type(model).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in FRAMEWORKS:
            return root
    raise ConversionFailed(f"expected an XGBoost, LightGBM or CatBoost model, got {type(model).__name__}")


def _require(framework: Boosting) -> None:
    name, modules = _EXTRA[framework]
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        raise ConversionFailed(f"{name} is not installed: pip install 'shipyard[{framework}]'") from None


def from_model(
    model: Any, framework: str | None = None, sample: Array | None = None, tolerance: float = 1e-4
) -> Converted:
    """Convert a fitted classifier or regressor (an sklearn-style estimator or a booster) and check it.

    Classifiers are checked on predict_proba against the ONNX `probabilities` output, regressors on
    predict, using `sample` when given or 16 rows of standard normal data otherwise. The columns'
    names, when the model was fitted on named ones, are recorded as the signature's features; a
    classifier's classes as the labels.
    """
    told = _known(framework) if framework else framework_of(model)
    _require(told)
    return _convert(_PREPARE[told](model), sample, tolerance)


def from_file(
    path: str | Path, framework: str, sample: Array | None = None, tolerance: float = 1e-4
) -> Converted:
    """Load a model file (XGBoost .json/.ubj, LightGBM text, CatBoost .cbm) and convert it as
    `from_model` does. These files are data, not pickles: nothing in them runs when loaded."""
    path = Path(path)
    told = _known(framework)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    _require(told)
    return from_model(_LOAD[told](path), told, sample=sample, tolerance=tolerance)


def _known(framework: str) -> Boosting:
    if framework not in FRAMEWORKS:
        raise InvalidInput(f"{framework!r} is not a gradient-boosting framework: {', '.join(FRAMEWORKS)}")
    return framework


def _convert(trees: _Trees, sample: Array | None, tolerance: float) -> Converted:
    x, source = _check_data(trees, sample)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = trees.export()
    except Exception as exc:  # the converters raise many unrelated types
        raise ConversionFailed(f"{trees.kind} cannot be converted to ONNX: {_reason(exc)}") from exc
    _declare_shapes(model, run_onnx(model.SerializeToString(), {INPUT_NAME: x}))
    onnx_bytes = model.SerializeToString()
    signature = signature_of(model)
    names = [spec.name for spec in signature.outputs]
    actual = dict(zip(names, run_onnx(onnx_bytes, {INPUT_NAME: x}), strict=True))
    out = PROBABILITIES if trees.classifier else names[-1]
    if out not in actual:
        raise ConversionFailed(f"the ONNX model of {trees.kind} has no output '{out}' (it has {names})")
    try:
        with warnings.catch_warnings():
            # fitted on a DataFrame, the libraries warn about a plain array; the values are the same
            warnings.simplefilter("ignore")
            expected = np.asarray(trees.predict(x))
    except Exception as exc:  # whatever the library raises on this data
        raise ConversionFailed(f"{trees.kind} fails on a sample of {len(x)} rows: {_reason(exc)}") from exc
    got = actual[out]
    if expected.size == got.size:
        expected = expected.reshape(got.shape)  # a regressor's [n] is ONNX's [n, 1]
    check = require_close({out: expected}, {out: got}, tolerance, len(x), source)
    signature = signature_of(model, Scores(out, "probabilities") if trees.classifier else None)
    if trees.features:
        signature = dataclasses.replace(signature, features=tuple(trees.features))
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature,
        framework=trees.framework,
        check=check,
        labels=trees.labels,
    )


def _check_data(trees: _Trees, sample: Array | None) -> tuple[Array, str]:
    if sample is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal((CHECK_ROWS, trees.n_features)).astype(np.float32), GENERATED
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConversionFailed(f"sample must be a non-empty 2-D array, got shape {list(x.shape)}")
    if x.shape[1] != trees.n_features:
        raise ConversionFailed(f"sample has {x.shape[1]} features; the {trees.kind} takes {trees.n_features}")
    return x, USER_DATA


def _declare_shapes(model: onnx.ModelProto, outputs: list[Array]) -> None:
    """Declare each output's shape as it comes out, batch axis dynamic: the converters declare some
    wrongly (LightGBM's label as [1], CatBoost's predictions as [N] where they are [N, 1])."""
    for value, array in zip(model.graph.output, outputs, strict=True):
        if value.type.WhichOneof("value") != "tensor_type" or array.ndim == 0:
            continue
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_param = "N"
        for size in array.shape[1:]:
            shape.dim.add().dim_value = size


def _reason(exc: BaseException) -> str:
    """A library's error in one line, without the place in its C++ sources it was raised at."""
    return _SOURCE_LINE.sub("", first_line(exc))


def _not_fitted(model: Any) -> ConversionFailed:
    name = type(model).__name__
    return ConversionFailed(f"{name} is not fitted: call {name}.fit() first")


def _real_names(names: Sequence[str] | None, automatic: list[str]) -> list[str] | None:
    """Names the user gave the columns; None when there are none or they are the library's own."""
    if not names or list(names) == automatic:
        return None
    return [str(name) for name in names]


# XGBoost


def _xgboost(model: Any) -> _Trees:
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        model = _xgboost_estimator(model)
    if not isinstance(model, xgb.XGBModel):
        raise ConversionFailed(
            f"expected an XGBoost model (XGBClassifier, XGBRegressor or Booster), got {type(model).__name__}"
        )
    try:
        booster = model.get_booster()
    except (ValueError, AttributeError):  # xgboost's NotFittedError is both
        raise _not_fitted(model) from None
    classifier = isinstance(model, xgb.XGBClassifier)
    if not classifier and not isinstance(model, xgb.XGBRegressor):
        raise ConversionFailed(f"{type(model).__name__} is neither a classifier nor a regressor")
    n_features = booster.num_features()
    return _Trees(
        framework="xgboost",
        kind=type(model).__name__,
        classifier=classifier,
        n_features=n_features,
        features=_real_names(booster.feature_names, []),
        labels=[str(c) for c in model.classes_] if classifier else None,
        predict=model.predict_proba if classifier else model.predict,
        export=lambda: _xgboost_onnx(booster, n_features),
    )


def _xgboost_estimator(booster: Any) -> Any:
    """The sklearn-style estimator of a booster, by its objective, so that predict_proba checks it."""
    import json

    import xgboost as xgb

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    cls = xgb.XGBClassifier if objective.startswith(_XGBOOST_CLASSES) else xgb.XGBRegressor
    estimator = cls()
    estimator.load_model(bytearray(booster.save_raw("ubj")))
    return estimator


def _xgboost_onnx(booster: Any, n_features: int) -> onnx.ModelProto:
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    # what predict uses: the trees up to the best iteration when training stopped early
    try:
        best = booster.best_iteration
    except AttributeError:
        best = None
    trees = booster[: best + 1] if best is not None else booster.copy()
    # onnxmltools reads features as f0, f1, ...: the names stay on the signature instead
    trees.feature_names = None
    trees.feature_types = None
    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    # named, or onnxmltools names the graph with a random uuid: the same model would differ each time
    model: onnx.ModelProto = convert_xgboost(
        trees, name="xgboost", initial_types=initial_types, target_opset=OPSET
    )
    return model


def _load_xgboost(path: Path) -> Any:
    import xgboost as xgb

    try:
        return xgb.Booster(model_file=str(path))
    except xgb.core.XGBoostError as exc:
        # "Check failed: str[0] == '{' (n vs. {) : Invalid model format in: `model.ubj`."
        reason = _reason(exc).rpartition(" : ")[2]
        raise ConversionFailed(
            f"{path.name} is not an XGBoost model saved with save_model: {reason}"
        ) from None


# LightGBM


def _lightgbm(model: Any) -> _Trees:
    import lightgbm as lgb

    if isinstance(model, lgb.LGBMModel):
        try:
            booster = model.booster_
        except (ValueError, AttributeError):  # LGBMNotFittedError is both
            raise _not_fitted(model) from None
        classifier = isinstance(model, lgb.LGBMClassifier)
        if not classifier and not isinstance(model, lgb.LGBMRegressor):
            raise ConversionFailed(f"{type(model).__name__} is neither a classifier nor a regressor")
        labels = [str(c) for c in model.classes_] if classifier else None
        predict = model.predict_proba if classifier else model.predict
    elif isinstance(model, lgb.Booster):
        booster = model
        objective = str(booster.dump_model(num_iteration=1).get("objective", "")).split(" ")[0]
        classifier = objective in _LIGHTGBM_CLASSES
        classes = max(booster.num_model_per_iteration(), 2)
        labels = [str(c) for c in range(classes)] if classifier else None
        predict = _two_columns(booster.predict) if objective == "binary" else booster.predict
    else:
        raise ConversionFailed(
            "expected a LightGBM model (LGBMClassifier, LGBMRegressor or Booster), "
            f"got {type(model).__name__}"
        )
    n_features = booster.num_feature()
    automatic = [f"Column_{i}" for i in range(n_features)]
    return _Trees(
        framework="lightgbm",
        kind=type(model).__name__,
        classifier=classifier,
        n_features=n_features,
        features=_real_names(booster.feature_name(), automatic),
        labels=labels,
        predict=predict,
        export=lambda: _lightgbm_onnx(model, n_features),
    )


def _two_columns(predict: Callable[..., Any]) -> Callable[[Array], Array]:
    """A binary booster predicts the positive class's probability; ONNX gives both classes'."""

    def both(x: Array) -> Array:
        positive = np.asarray(predict(x)).reshape(-1)
        return np.stack([1.0 - positive, positive], axis=1)

    return both


def _lightgbm_onnx(model: Any, n_features: int) -> onnx.ModelProto:
    from onnxmltools.convert import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    # zipmap off: probabilities as a [batch, classes] tensor rather than a list of dicts
    converted: onnx.ModelProto = convert_lightgbm(
        model, name="lightgbm", initial_types=initial_types, zipmap=False, target_opset=OPSET
    )
    return converted


def _load_lightgbm(path: Path) -> Any:
    import lightgbm as lgb

    # LightGBM logs a fatal error of its own before it raises: a file that does not start as its
    # model files do is refused first, quietly
    with path.open("rb") as file:
        head = file.readline().strip()
    if head != b"tree":
        raise ConversionFailed(f"{path.name} is not a LightGBM model file (Booster.save_model writes one)")
    try:
        return lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise ConversionFailed(f"{path.name} is not a LightGBM model file: {first_line(exc)}") from None


# CatBoost (convert/catboost_trees.py, imported with CatBoost itself)


def _catboost(model: Any) -> _Trees:
    from shipyard.convert import catboost_trees

    return catboost_trees.prepare(model)


def _load_catboost(path: Path) -> Any:
    from shipyard.convert import catboost_trees

    return catboost_trees.load(path)


_PREPARE: dict[Boosting, Callable[[Any], _Trees]] = {
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "catboost": _catboost,
}
_LOAD: dict[Boosting, Callable[[Path], Any]] = {
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
    "catboost": _load_catboost,
}
