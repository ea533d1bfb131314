"""How a batch job's input feeds a model (shipyard/batch/mapping.py): Avro records, a folder of images,
a list column per row, several inputs, and the predictions written (top-k, raw lists in CSV), with a
dry run that says all of it before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from shipyard.batch import Job, Predictions, plan, run
from shipyard.errors import InvalidInput
from shipyard.registry import Registry
from shipyard.signature import Scores, Signature, TensorSpec
from tests.conftest import register_digits
from tests.models import brightness_model, digits_linear, two_inputs_model
from tests.unit.batch.conftest import X, expected_classes, parquet

CHECK = {"passed": True, "source": "test"}


@pytest.fixture
def images(registry: Registry) -> Registry:
    signature = Signature(
        (TensorSpec("image", "FP32", (-1, 3, 8, 8)),),
        (TensorSpec("logits", "FP32", (-1, 2)),),
        Scores("logits", "logits"),
    )
    registry.register(
        "bright",
        brightness_model(),
        signature=signature,
        framework="onnx",
        check=CHECK,
        labels=["dark", "bright"],
    )
    return registry


@pytest.fixture
def two(registry: Registry) -> Registry:
    signature = Signature(
        (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "FP32", (-1, 3))),
        (TensorSpec("logits", "FP32", (-1, 2)),),
        Scores("logits", "logits"),
    )
    registry.register("two", two_inputs_model(), signature=signature, framework="onnx", check=CHECK)
    return registry


def test_avro_records_are_scored_like_parquet(registry: Registry, tmp_path: Path) -> None:
    register_digits(registry)
    schema = {
        "type": "record",
        "name": "Digit",
        "fields": [{"name": "id", "type": "long"}, *({"name": f"p{i}", "type": "float"} for i in range(64))],
    }
    records = [{"id": i, **{f"p{j}": float(v) for j, v in enumerate(X[i])}} for i in range(120)]
    with (tmp_path / "in.avro").open("wb") as out:
        fastavro.writer(out, schema, records)
    summary = run(
        registry, Job("digits", str(tmp_path / "in.avro"), tmp_path / "out", keep=("id",), part_rows=50)
    )
    table = pq.read_table(tmp_path / "out")
    assert (summary.rows, summary.parts) == (120, 3)
    assert table.column("id").to_pylist() == list(range(120))
    assert table.column("class").to_pylist() == expected_classes(slice(0, 120))


def test_a_folder_of_images_is_resized_and_scored_and_a_bad_file_is_one_bad_row(
    images: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "pictures"
    (folder / "day").mkdir(parents=True)
    for i, shade in enumerate([250, 10, 200, 30]):  # 32x24: resized to the signature's 8x8
        Image.new("RGB", (32, 24), (shade, shade, shade)).save(folder / "day" / f"{i}.png")
    (folder / "day" / "broken.jpg").write_bytes(b"not a picture")
    summary = run(images, Job("bright", str(folder), tmp_path / "out", max_errors=1))
    assert (summary.rows, summary.errors) == (5, 1)
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["path", "class", "confidence"]  # images keep their path by default
    assert dict(zip(table.column("path").to_pylist(), table.column("class").to_pylist(), strict=True)) == {
        "day/0.png": "bright", "day/1.png": "dark", "day/2.png": "bright", "day/3.png": "dark",
    }  # fmt: skip
    error = json.loads((tmp_path / "out" / "_errors-00000.jsonl").read_text())
    assert error["row"] == 4 and error["error"].startswith("not an image")


def test_a_list_column_feeds_a_whole_input(images: Registry, tmp_path: Path) -> None:
    pixels = np.stack([np.full(192, v, np.float32) for v in (0.9, 0.1, 0.7)])
    column = pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), 192)
    lists = pa.array([[0.9] * 192, None, [0.2] * 100])  # a variable list: a row missing, one too short
    pq.write_table(pa.table({"id": [1, 2, 3], "pixels": column}), tmp_path / "fixed.parquet")
    pq.write_table(pa.table({"id": [4, 5, 6], "pixels": lists}), tmp_path / "varied.parquet")
    run(images, Job("bright", str(tmp_path / "fixed.parquet"), tmp_path / "a", keep=("id",)))
    assert pq.read_table(tmp_path / "a").column("class").to_pylist() == ["bright", "dark", "bright"]
    summary = run(
        images, Job("bright", str(tmp_path / "varied.parquet"), tmp_path / "b", keep=("id",), max_errors=2)
    )
    assert summary.errors == 2
    assert pq.read_table(tmp_path / "b").column("id").to_pylist() == [4]
    reasons = [
        json.loads(line)["error"]
        for line in (tmp_path / "b" / "_errors-00000.jsonl").read_text().splitlines()
    ]
    assert reasons == ["column 'pixels' is missing", "column 'pixels' holds 100 values, not 192"]


def test_a_list_column_reads_right_across_row_groups_parts_and_batches(
    images: Registry, tmp_path: Path
) -> None:
    """Batches that start inside a read batch, and end in the next (row groups of 4, parts of 5, runs
    of 3): each row still gets its own pixels (read in place where they lie in one piece)."""
    ids = np.arange(23)
    bright = ids % 3 == 0
    pixels = np.repeat(np.where(bright, 0.9, 0.1).astype(np.float32), 192)
    table = pa.table({"id": ids, "pixels": pa.FixedSizeListArray.from_arrays(pa.array(pixels), 192)})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=4)
    job = Job(
        "bright", str(tmp_path / "in.parquet"), tmp_path / "out", keep=("id",), part_rows=5, batch_rows=3
    )
    assert run(images, job).rows == 23
    out = pq.read_table(tmp_path / "out")
    assert out.column("id").to_pylist() == ids.tolist()
    assert out.column("class").to_pylist() == ["bright" if b else "dark" for b in bright]


def test_several_inputs_take_their_columns_in_order_or_as_named(two: Registry, tmp_path: Path) -> None:
    values = np.arange(20, dtype=np.float32).reshape(4, 5)
    pq.write_table(
        pa.table({"id": range(4), **{f"c{i}": values[:, i] for i in range(5)}}), tmp_path / "in.parquet"
    )
    logits = values @ np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1]], np.float32)
    run(
        two,
        Job(
            "two", str(tmp_path / "in.parquet"), tmp_path / "a", keep=("id",), predictions=Predictions("raw")
        ),
    )
    np.testing.assert_allclose(np.array(pq.read_table(tmp_path / "a").column("logits").to_pylist()), logits)
    named = (("c3", "c4"), ("c0", "c1", "c2"))
    job = Job(
        "two", str(tmp_path / "in.parquet"), tmp_path / "b", columns=named, predictions=Predictions("raw")
    )
    run(two, job)
    swapped = values[:, [3, 4, 0, 1, 2]] @ np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1]], np.float32)
    np.testing.assert_allclose(np.array(pq.read_table(tmp_path / "b").column("logits").to_pylist()), swapped)
    with pytest.raises(InvalidInput, match=r"takes 2 inputs \(a, b\): give --columns once per input"):
        run(two, Job("two", str(tmp_path / "in.parquet"), tmp_path / "c", columns=("c0", "c1")))


def test_top_k_classes_and_raw_lists_in_csv(registry: Registry, tmp_path: Path) -> None:
    register_digits(registry)
    np.save(tmp_path / "in.npy", X[:10])
    run(registry, Job("digits", str(tmp_path / "in.npy"), tmp_path / "top", predictions=Predictions(top_k=3)))
    table = pq.read_table(tmp_path / "top")
    logits = digits_linear().logits(X[:10])
    assert table.column("top_classes").to_pylist() == [[str(i) for i in np.argsort(-r)[:3]] for r in logits]
    confidences = np.array(table.column("top_confidences").to_pylist())
    assert (np.diff(confidences, axis=1) <= 0).all() and confidences[:, 0] == pytest.approx(
        table.column("confidence").to_numpy()
    )
    run(
        registry,
        Job("digits", str(tmp_path / "in.npy"), tmp_path / "raw", "csv", predictions=Predictions("raw")),
    )
    rows = (tmp_path / "raw" / "part-00000.csv").read_text().splitlines()
    assert rows[0] == '"logits"' and np.allclose(json.loads(json.loads(rows[1])), logits[0], atol=1e-4)


def test_a_dry_run_says_what_would_run_and_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    register_digits(registry)
    registry.deploy("digits", 1)
    parquet(tmp_path / "in.parquet", 30)
    planned = plan(
        registry, Job("digits:production", str(tmp_path / "in.parquet"), tmp_path / "out", keep=("id",))
    )
    assert planned.lines() == [
        f"model: digits:1 (sha256 {planned.record.sha256[:12]})",
        "input: 1 parquet files, 30 rows, 30,765 rows a part",
        "input input [-1, 64] FP32 <- 64 columns (p0, p1, ..., p63)",
        "output: id, class, confidence",
    ]
    assert planned.preview.column("class").to_pylist() == expected_classes(slice(0, 5))
    assert not (tmp_path / "out").exists()


def test_files_of_other_layouts_or_a_column_changing_type_are_refused_clearly(
    registry: Registry, tmp_path: Path
) -> None:
    register_digits(registry)
    pq.write_table(pa.table({f"p{i}": X[:5, i] for i in range(64)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({f"q{i}": X[:5, i] for i in range(64)}), tmp_path / "b.parquet")
    with pytest.raises(InvalidInput, match="the input files' columns differ"):
        run(registry, Job("digits", str(tmp_path / "*.parquet"), tmp_path / "out"))
    rows = [{f"p{i}": float(v) for i, v in enumerate(X[r])} for r in range(3)]
    rows[2]["p5"] = "seven"  # type: ignore[assignment]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        InvalidInput, match=r"in.jsonl: cannot be read as json: .*changed from number to string"
    ):
        run(registry, Job("digits", str(tmp_path / "in.jsonl"), tmp_path / "out2"))
