"""Evaluation data in every format, shaped as the signature says; targets mapped for each metric."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.optimize import load_data
from shipyard.optimize.metrics import get_metric, targets_for
from shipyard.signature import Signature, TensorSpec
from tests.unit.optimize.trained import split

FLAT = Signature((TensorSpec("input", "FP32", (-1, 64)),), (TensorSpec("logits", "FP32", (-1, 10)),))
NCHW = Signature((TensorSpec("image", "FP32", (-1, 3, 6, 4)),), (TensorSpec("logits", "FP32", (-1, 2)),))
NHWC = Signature((TensorSpec("image", "FP32", (-1, 6, 4, 1)),), (TensorSpec("logits", "FP32", (-1, 2)),))


def test_npz_csv_and_parquet_give_the_same_rows(tmp_path: Path) -> None:
    s = split()
    X, y = s.X_test[:20], s.y_test[:20]
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with (tmp_path / "d.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"p{i}" for i in range(64)] + ["label"])
        writer.writerows([*map(int, row), int(label)] for row, label in zip(X, y, strict=True))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({**{f"p{i}": X[:, i] for i in range(64)}, "digit": y})
    pq.write_table(table, tmp_path / "d.parquet")

    npz = load_data(tmp_path / "d.npz", FLAT)
    from_csv = load_data(tmp_path / "d.csv", FLAT)
    parquet = load_data(tmp_path / "d.parquet", FLAT, label_column="digit")
    for data in (npz, from_csv, parquet):
        assert data.inputs["input"].dtype == np.float32 and data.inputs["input"].shape == (20, 64)
        np.testing.assert_array_equal(data.inputs["input"], X)
        assert data.y is not None
        np.testing.assert_array_equal(targets_for(get_metric("accuracy"), data.y, None), y)
    assert from_csv.info.name == "d.csv" and len(from_csv.info.sha256) == 64


def test_string_labels_map_through_the_models_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,dog\n3,4,cat\n5,6,dog\n")
    sig = Signature((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("p", "FP32", (-1, 2)),))
    data = load_data(tmp_path / "d.csv", sig)
    assert data.y is not None
    accuracy = get_metric("accuracy")
    assert targets_for(accuracy, data.y, ["cat", "dog"]).tolist() == [1, 0, 1]
    with pytest.raises(InvalidInput, match="'cat', 'dog' are not among the model's labels"):
        targets_for(accuracy, data.y, ["ant", "bee"])
    with pytest.raises(InvalidInput, match="import it with --labels"):
        targets_for(accuracy, data.y, None)


def test_a_folder_of_images_is_resized_and_laid_out_as_the_signature_says(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    for name, value in (("dark", 10), ("light", 240)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((12, 8, 3), value, dtype=np.uint8)
            image_module.fromarray(pixels).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "imgs" / "light" / "notes.txt").write_text("not an image")

    data = load_data(tmp_path / "imgs", NCHW)
    assert data.inputs["image"].shape == (6, 3, 6, 4)
    assert data.classes == ["dark", "light"]
    assert data.y is not None
    assert targets_for(get_metric("accuracy"), data.y, None, data.classes).tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(data.inputs["image"][0], 10 / 255, rtol=1e-6)
    grey = load_data(tmp_path / "imgs", NHWC)
    assert grey.inputs["image"].shape == (6, 6, 4, 1)
    assert grey.info.name == "imgs/" and grey.info.size > 0
    with pytest.raises(InvalidInput, match="is not an image batch"):
        load_data(tmp_path / "imgs", FLAT)


def test_mistakes_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "nolabel.csv").write_text("a,b\n1,2\n")
    (tmp_path / "wide.npz").write_bytes(b"")
    np.savez(tmp_path / "wide.npz", X=np.zeros((3, 65)), y=np.zeros(3))
    np.savez(tmp_path / "noy.npz", X=np.zeros((3, 64)))
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(InvalidInput, match="no label column 'label' or 'y'"):
        load_data(tmp_path / "nolabel.csv", FLAT)
    with pytest.raises(InvalidInput, match="rows of 65 values do not fit input 'input'"):
        load_data(tmp_path / "wide.npz", FLAT)
    with pytest.raises(InvalidInput, match="has no targets"):
        load_data(tmp_path / "noy.npz", FLAT)
    assert load_data(tmp_path / "noy.npz", FLAT, need_labels=False).rows == 3
    with pytest.raises(InvalidInput, match=r"use \.npz, \.npy, \.csv or \.parquet"):
        load_data(tmp_path / "d.txt", FLAT)
    with pytest.raises(NotFound):
        load_data(tmp_path / "missing.npz", FLAT)


def test_metrics_know_which_way_is_worse() -> None:
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    targets = np.array([1, 0, 0, 2])
    assert get_metric("accuracy").compute(scores, targets) == 0.5
    assert get_metric("top-5").compute(scores, targets) == 1.0  # fewer than 5 classes: all in the top
    mse = get_metric("mse")
    assert mse.compute(np.array([[1.0], [3.0]]), np.array([2.0, 3.0])) == 0.5
    assert get_metric("accuracy").drop(0.9, 0.85) == pytest.approx(0.05)
    assert mse.drop(0.5, 0.7) == pytest.approx(0.2)  # mse rising is a drop
    with pytest.raises(InvalidInput, match="unknown metric 'f1'"):
        get_metric("f1")
