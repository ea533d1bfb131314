"""Fixtures: a fresh registry per test (tests/conftest.py) holding small trained models, and the
evaluation and training splits written as files the way a user would pass them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shipyard.registry import Registry, VersionRecord
from tests.unit.optimize.trained import LABELS, cnn, images, mlp, split


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread; on a busy 2-core machine two threads spin for ages."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """test/train splits as .npz, for the MLP (flat pixels) and the CNN (1x8x8 images)."""
    s = split()
    paths = {
        "test": tmp_path / "test.npz",
        "train": tmp_path / "train.npz",
        "test_images": tmp_path / "test-images.npz",
        "train_images": tmp_path / "train-images.npz",
    }
    np.savez(paths["test"], X=s.X_test, y=s.y_test)
    np.savez(paths["train"], X=s.X_train, y=s.y_train)
    np.savez(paths["test_images"], X=images(s.X_test), y=s.y_test)
    np.savez(paths["train_images"], X=images(s.X_train), y=s.y_train)
    return paths


@pytest.fixture
def digits_mlp(registry: Registry) -> VersionRecord:
    torch = pytest.importorskip("torch")

    import shipyard

    return shipyard.import_torch(mlp(), torch.zeros(1, 64), name="digits", labels=LABELS, registry=registry)


@pytest.fixture
def digits_cnn(registry: Registry) -> VersionRecord:
    torch = pytest.importorskip("torch")

    import shipyard

    return shipyard.import_torch(cnn(), torch.zeros(1, 1, 8, 8), name="cnn", labels=LABELS, registry=registry)
