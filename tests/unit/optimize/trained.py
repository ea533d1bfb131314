"""Small models trained in code on scikit-learn's digits, and the data splits they were trained on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort

from shipyard.optimize import Timing
from tests.models import digits_data

LABELS = [str(i) for i in range(10)]
# Enough runs to exercise the timing code, few enough to keep each test well under a second of it.
QUICK = Timing(latency_runs=8, throughput_batches=2, batch=32, rounds=2, warmup=1, threads=1)


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@cache
def split() -> Split:
    X, y = digits_data()
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:1300], order[1300:]
    return Split(X[train], y[train], X[test], y[test])


@cache
def mlp(hidden: int = 32) -> Any:
    """Raw pixels (0..16) in, logits out; the scaling is part of the model, as in the demo."""
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x / 16.0)

    torch.manual_seed(0)
    return _train(MLP(), split().X_train, epochs=25)


@cache
def cnn() -> Any:
    """Digits as 1x8x8 images through two convolutions."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    return _train(model, images(split().X_train), epochs=25)


def images(X: np.ndarray) -> np.ndarray:
    return (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)


def _train(model: Any, X: np.ndarray, epochs: int) -> Any:
    import torch

    torch.set_num_threads(1)

    torch.manual_seed(0)
    xs, ys = torch.from_numpy(X), torch.from_numpy(split().y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(xs)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimizer.step()
    return model.eval()


def accuracy_of(onnx_bytes: bytes, X: np.ndarray, y: np.ndarray) -> float:
    """Recomputed here, independently of shipyard's measurement code: a plain session, argmax, mean."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    return float((logits.argmax(axis=1) == y).mean())
