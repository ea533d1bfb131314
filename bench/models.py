"""The two benchmark models, built in code: the digits MLP (tiny compute: measures serving overhead)
and a small CNN on 3x64x64 images (compute-bound). Registered with shipyard.import_torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import shipyard
from shipyard.config import Settings
from shipyard.monitor.reference import profile_version
from shipyard.registry import Registry


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def digits_mlp() -> nn.Module:
    """Trained briefly on scikit-learn's digits, so its answers mean something."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    xs, ys = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y)
    model = DigitsMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        for idx in torch.randperm(len(xs)).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimizer.step()
    return model.eval()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().eval()


SHAPES = {"digits": (64,), "cnn": (3, 64, 64)}


def sample(name: str, rows: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = 16.0 if name == "digits" else 1.0
    return (rng.random((rows, *SHAPES[name])) * scale).astype(np.float32)


BUILDERS = {"digits": digits_mlp, "cnn": small_cnn}


def build(home: Path, names: tuple[str, ...] = ("digits", "cnn")) -> dict[str, Path]:
    """Register the models (both unless told) in a registry under `home`; returns each model's ONNX
    file."""
    registry = Registry.open(Settings(home=home))
    files = {}
    try:
        for name in names:
            module = BUILDERS[name]()
            example = torch.from_numpy(sample(name))
            record = shipyard.import_torch(module, example, name=name, registry=registry)
            files[name] = home / f"{name}.onnx"
            files[name].write_bytes(registry.artifact(record))
            # a reference profile, so that monitoring does all it does in production (drift too)
            np.savez(home / f"{name}-reference.npz", X=sample(name, 1000))
            profile = profile_version(registry, record, home / f"{name}-reference.npz")
            registry.set_reference(name, record.number, profile, "bench sample")
    finally:
        registry.close()
    return files
