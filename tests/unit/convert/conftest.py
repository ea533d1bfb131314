"""Converter fixtures: scikit-learn's bundled digits and a pipeline fitted on them (no downloads)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    features, target = load_digits(return_X_y=True)
    return features.astype(np.float32), target


@pytest.fixture(scope="module")
def pipeline(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(*digits)
