"""What the batch tests share: the digits version deployed to production, and input files made here."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.models import digits_data, digits_linear

X, Y = digits_data()


@pytest.fixture
def digits(registry: Registry) -> Registry:
    register_digits(registry)
    registry.deploy("digits", 1)
    return registry


def parquet(path: Path, rows: int = 300, *, ids: bool = True) -> Path:
    """The first `rows` digits as columns p0..p63, after an id column unless `ids` is off."""
    pq.write_table(pa.table({**({"id": np.arange(rows)} if ids else {}), **columns(rows)}), path)
    return path


def columns(rows: int) -> dict[str, np.ndarray]:
    return {f"p{i}": X[:rows, i] for i in range(64)}


def bad_csv(path: Path) -> Path:
    """60 digits rows with an id; rows 7 and 30 cannot be read (p3 is "abc", then empty)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *[f"p{i}" for i in range(64)]])
        for i in range(60):
            row = X[i].tolist()
            if i in (7, 30):
                row[3] = "abc" if i == 7 else ""
            writer.writerow([i, *row])
    return path


def expected_classes(rows: slice) -> list[str]:
    return [str(i) for i in digits_linear().logits(X[rows]).argmax(axis=1)]
