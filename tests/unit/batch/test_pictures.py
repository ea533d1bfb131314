"""A batch job over a folder of pictures, for a version imported with an image recipe: the pictures
are decoded as the server decodes them, and the job's classes are the server's path's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq

from shipyard.batch import Job, run
from shipyard.importing import import_onnx
from shipyard.processing import front_for, samples
from shipyard.registry import Registry
from shipyard.runtime.session import Runner, RunnerOptions
from tests.models import picture_cnn

RECIPE = "image: resize=36, center_crop=32, normalize=imagenet"


def test_a_folder_of_pictures_scores_as_the_server_decodes_them(registry: Registry, tmp_path: Path) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(picture_cnn())
    record = import_onnx(model, name="pets", preprocess=RECIPE, registry=registry)
    folder = tmp_path / "pictures"
    folder.mkdir()
    pictures = samples.pictures()
    suffixes = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
    for i, ((fmt, _, _), data) in enumerate(zip(samples.KINDS, pictures, strict=True)):
        (folder / f"{i}.{suffixes[fmt]}").write_bytes(data)
    (folder / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")

    summary = run(registry, Job("pets", str(folder), tmp_path / "out", max_errors=1))

    assert (summary.rows, summary.errors) == (7, 1)
    table = pq.read_table(next((tmp_path / "out").glob("part-*.parquet"))).to_pydict()
    runner = Runner("pets", registry.artifact(record), RunnerOptions())
    runner.load()
    front = front_for(record.signature)
    assert front is not None
    decoded = asyncio.run(front({"image": np.array(pictures, dtype=object)}))  # the server's path
    logits = runner.run_sync(decoded, ["logits"])[0]
    by_path = dict(zip(table["path"], table["class"], strict=True))
    assert [by_path[f"{i}.{suffixes[fmt]}"] for i, (fmt, _, _) in enumerate(samples.KINDS)] == [
        str(c) for c in logits.argmax(axis=1)
    ]
    error = orjson.loads(next((tmp_path / "out").glob("_errors-*.jsonl")).read_bytes().splitlines()[0])
    assert "not a picture" in error["error"]
