"""Rows by column name: a gradient-boosted model fitted on a DataFrame knows its columns, and /predict
takes {"input": {"age": 42, ...}} in any order, with the classes XGBoost itself predicts."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.importing import import_boosting
from shipyard.registry import Registry
from tests.unit.conftest import serving, unit_settings

pd = pytest.importorskip("pandas")
xgboost = pytest.importorskip("xgboost")

COLUMNS = ["age", "income", "kids"]


def test_rows_by_column_name_get_xgboosts_own_classes(registry: Registry, settings: Settings) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 400),
            "income": rng.normal(3000, 900, 400),
            "kids": rng.integers(0, 4, 400),
        }
    ).astype(np.float32)
    y = ((frame["income"] > 3000) & (frame["kids"] < 2)).astype(int)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(frame, y)
    record = import_boosting(model, name="churn", labels=["stays", "leaves"], registry=registry)
    assert record.signature.features == tuple(COLUMNS)
    rows = frame.iloc[:5]
    want = model.predict_proba(rows)
    with serving(registry, unit_settings(settings)) as (client, _):
        shuffled = [{name: float(row[name]) for name in reversed(COLUMNS)} for _, row in rows.iterrows()]
        answers = client.post("/v1/models/churn/predict", json={"inputs": shuffled}).json()
        assert [a["class"] for a in answers] == [["stays", "leaves"][i] for i in want.argmax(axis=1)]
        assert [a["confidence"] for a in answers] == pytest.approx(want.max(axis=1).tolist(), abs=1e-5)
        missing = client.post("/v1/models/churn/predict", json={"input": {"age": 30, "income": 10.0}})
        assert missing.status_code == 400
        assert missing.json()["error"] == "missing column(s) 'kids': the model takes age, income, kids"
