"""CatBoost models to ONNX through CatBoost's own export (convert/boosting.py converts and checks): a
.cbm file is data, loaded without running code from it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx

from shipyard.convert.boosting import (
    _CATBOOST_CLASSES,
    INPUT_NAME,
    PROBABILITIES,
    _not_fitted,
    _real_names,
    _reason,
    _Trees,
)
from shipyard.errors import ConversionFailed


def prepare(model: Any) -> _Trees:
    import catboost

    if not isinstance(model, catboost.CatBoost):
        raise ConversionFailed(
            f"expected a CatBoost model (CatBoostClassifier or CatBoostRegressor), got {type(model).__name__}"
        )
    if not model.is_fitted():
        raise _not_fitted(model)
    if not isinstance(model, catboost.CatBoostClassifier | catboost.CatBoostRegressor):
        model = _catboost_estimator(model)
    classifier = isinstance(model, catboost.CatBoostClassifier)
    n_features = len(model.feature_names_)
    return _Trees(
        framework="catboost",
        kind=type(model).__name__,
        classifier=classifier,
        n_features=n_features,
        features=_real_names(model.feature_names_, [str(i) for i in range(n_features)]),
        labels=[str(c) for c in model.classes_] if classifier else None,
        predict=model.predict_proba if classifier else model.predict,
        export=lambda: _catboost_onnx(model),
    )


def _catboost_estimator(model: Any, path: Path | None = None) -> Any:
    """The classifier or regressor a plain CatBoost model (the one in `path`) is, by its loss
    function, so that predict_proba checks a classifier."""
    import catboost

    loss = str(model.get_all_params().get("loss_function", "")).split(":")[0]
    cls = catboost.CatBoostClassifier if loss in _CATBOOST_CLASSES else catboost.CatBoostRegressor
    if path is not None:
        return cls().load_model(str(path))
    with tempfile.TemporaryDirectory(prefix="shipyard-catboost-") as folder:
        saved = Path(folder) / "model.cbm"
        model.save_model(str(saved))
        return cls().load_model(str(saved))


def _catboost_onnx(model: Any) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="shipyard-catboost-") as folder:
        path = Path(folder) / "model.onnx"
        model.save_model(str(path), format="onnx")
        exported = onnx.load_model(str(path))
    graph = exported.graph
    _rename(graph, graph.input[0].name, INPUT_NAME)
    # CatBoost ends a classifier with ZipMap (a list of {class: probability} dicts): serve the
    # [batch, classes] tensor before it
    for node in list(graph.node):
        if node.op_type == "ZipMap":
            graph.node.remove(node)
            output = next(value for value in graph.output if value.name == node.output[0])
            graph.output.remove(output)
            _rename(graph, node.input[0], PROBABILITIES)
            graph.output.append(
                onnx.helper.make_tensor_value_info(PROBABILITIES, onnx.TensorProto.FLOAT, ["N", None])
            )
    return exported


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for value in [*graph.input, *graph.output]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def load(path: Path) -> Any:
    import catboost

    try:
        model = catboost.CatBoost().load_model(str(path))
    except catboost.CatBoostError as exc:
        raise ConversionFailed(f"{path.name} is not a CatBoost model (.cbm): {_reason(exc)}") from None
    return _catboost_estimator(model, path)
