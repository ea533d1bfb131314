"""A batch job: a registered version run over files, part by part, each part committed on its own.

Every part's predictions are written to a temporary file and renamed into place, and only then listed
in the output folder's manifest (itself replaced whole), so a job killed at any moment leaves whole
parts and a manifest that names exactly them. Run again with the same arguments, it goes on after the
last part listed: the output ends with every input row once. Rows that cannot be read go to the part's
errors file, with the row number and why; past `max_errors` the job stops and says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipyard import scoring
from shipyard.batch.sources import Part, input_files, parts
from shipyard.errors import Conflict, InvalidInput
from shipyard.registry import Registry, VersionRecord, parse_ref
from shipyard.runtime.session import Runner, RunnerOptions

MANIFEST = "_manifest.json"
"""Named as readers of a folder of Parquet files (pyarrow, Spark, DuckDB) skip it, as they skip the
_errors files: the folder reads as one table of predictions."""
OUTPUT_FORMATS = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
Progress = Callable[[Part, int], None]
"""Told of each part as it is committed, with the rows done so far."""


@dataclass(frozen=True)
class Summary:
    model: str
    version: int
    rows: int
    errors: int
    seconds: float
    parts: int
    resumed_parts: int
    output: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


@dataclass(frozen=True)
class Job:
    ref: str
    inputs: str
    output: Path
    format: str = "parquet"
    columns: tuple[str, ...] | None = None
    keep: tuple[str, ...] = ()
    raw: bool = False
    """Write the model's raw outputs instead of class and confidence."""
    part_rows: int = 100_000
    batch_rows: int = 4096
    max_errors: float = 0
    """Rows that may fail: a count (1 or more), or a fraction of the rows read (below 1)."""
    threads: int = 0

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise InvalidInput(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, not {self.format!r}")
        if self.part_rows < 1 or self.batch_rows < 1 or self.max_errors < 0:
            raise InvalidInput("--part-rows and --batch-rows must be 1 or more, --max-errors 0 or more")

    def arguments(self) -> dict[str, Any]:
        """What a rerun must repeat to resume (the same rows in the same parts, the same columns)."""
        return {
            "inputs": self.inputs, "format": self.format, "columns": self.columns, "keep": list(self.keep),
            "raw": self.raw, "part_rows": self.part_rows,
        }  # fmt: skip


def run(registry: Registry, job: Job, progress: Progress | None = None) -> Summary:
    """Run `job`, or go on with it where an earlier run of it stopped; the summary of the whole job."""
    name, version = parse_ref(job.ref)
    record = registry.version(name, version)
    files = input_files(job.inputs)
    manifest = _manifest(job, record, files)
    done = {p["part"] for p in manifest["parts"]}
    threads = job.threads or os.cpu_count() or 1  # a job has the machine: every core, large batches
    runner = Runner(record.ref, registry.artifact(record), RunnerOptions(intra_op_threads=threads))
    runner.load()
    started = time.perf_counter()
    rows = sum(p["rows"] for p in manifest["parts"])
    errors = sum(p["errors"] for p in manifest["parts"])
    try:
        for part in parts(files, job.part_rows, job.columns, job.keep):
            if part.number in done:
                continue
            outputs = _predict(runner, record, part, job.batch_rows)
            _commit(job, record, part, outputs, manifest)
            rows, errors = rows + part.rows, errors + len(part.bad)
            if progress is not None:
                progress(part, rows)
            limit = job.max_errors if job.max_errors >= 1 else job.max_errors * rows
            if errors > limit:
                raise InvalidInput(
                    f"{errors} rows could not be read, more than --max-errors {job.max_errors:g}: "
                    f"their numbers and reasons are in {job.output}/_errors-*.jsonl"
                )
    finally:
        runner.unload()
    manifest["done"] = True
    _write_json(job.output / MANIFEST, manifest)
    seconds = time.perf_counter() - started
    return Summary(
        name, record.number, rows, errors, seconds, len(manifest["parts"]), len(done), str(job.output)
    )


def _manifest(job: Job, record: VersionRecord, files: Sequence[Path]) -> dict[str, Any]:
    """The output folder's manifest: an earlier run's of this job (to go on with), or a new one."""
    path = job.output / MANIFEST
    wanted = {
        "model": record.model, "version": record.number, "sha256": record.sha256,
        "arguments": job.arguments(), "files": [str(p) for p in files],
    }  # fmt: skip
    if path.exists():
        found = orjson.loads(path.read_bytes())
        if any(found.get(k) != v for k, v in wanted.items()):
            raise Conflict(
                f"{job.output} holds the output of another job (other inputs, version or arguments): "
                "give a new --output folder"
            )
        return dict(found)
    if job.output.exists() and any(job.output.iterdir()):
        raise Conflict(f"{job.output} is not empty and holds no job's manifest: give a new --output folder")
    job.output.mkdir(parents=True, exist_ok=True)
    return {**wanted, "parts": [], "done": False}


def _predict(runner: Runner, record: VersionRecord, part: Part, batch_rows: int) -> dict[str, np.ndarray]:
    """The part's readable rows run in batches: each output of the model, a row per input row."""
    signature = record.signature
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"{record.ref} takes {len(signature.inputs)} inputs; a batch job feeds models of one"
        )
    spec = signature.inputs[0]
    width = int(np.prod([d for d in spec.shape[1:]])) if spec.shape else 0
    if part.features.shape[1] != width:
        raise InvalidInput(
            f"{record.ref} takes {width} values a row ({spec.name} {list(spec.shape)}); the input gives "
            f"{part.features.shape[1]}: --columns names the features, --keep takes id columns out of them"
        )
    names = [o.name for o in signature.outputs]
    found: dict[str, list[np.ndarray]] = {n: [] for n in names}
    shape = [-1, *spec.shape[1:]]
    for start in range(0, len(part.features), batch_rows):
        batch = part.features[start : start + batch_rows].reshape(shape)
        for name, out in zip(names, runner.run_sync({spec.name: batch}), strict=True):
            found[name].append(out)
    return {n: np.concatenate(v) if v else np.zeros((0,)) for n, v in found.items()}


def _columns(record: VersionRecord, part: Part, outputs: dict[str, np.ndarray], raw: bool) -> dict[str, Any]:
    """The output rows' columns: the kept ones, then class and confidence (or the raw outputs)."""
    kept = {name: column.take(pa.array(part.good)) for name, column in part.kept.items()}
    scores = record.signature.scores
    if raw or scores is None or scores.output not in outputs:
        return {**kept, **{n: pa.array(list(v.reshape(len(v), -1))) for n, v in outputs.items()}}
    values = outputs[scores.output]
    scored = scoring.read(values.reshape(len(values), -1), scores.kind)
    labels = record.labels
    classes = [labels[i] if labels and i < len(labels) else str(i) for i in scored.predicted.tolist()]
    return {**kept, "class": pa.array(classes), "confidence": pa.array(scored.confidence.astype(np.float64))}


def _commit(
    job: Job, record: VersionRecord, part: Part, outputs: dict[str, np.ndarray], manifest: dict[str, Any]
) -> None:
    """Write the part's predictions and errors whole, then list it in the manifest."""
    table = pa.table(_columns(record, part, outputs, job.raw))
    name = f"part-{part.number:05d}{OUTPUT_FORMATS[job.format]}"
    _atomic(job.output / name, lambda path: _write(table, path, job.format, record))
    if part.bad:
        lines = b"".join(
            orjson.dumps({"row": part.first_row + i, "error": why}) + b"\n" for i, why in part.bad
        )
        _atomic(job.output / f"_errors-{part.number:05d}.jsonl", lambda path: path.write_bytes(lines))
    manifest["parts"].append(
        {
            "part": part.number,
            "file": name,
            "rows": part.rows,
            "predictions": len(part.good),
            "errors": len(part.bad),
        }
    )
    _write_json(job.output / MANIFEST, manifest)


def _write(table: pa.Table, path: Path, format: str, record: VersionRecord) -> None:
    if format == "parquet":
        meta = {
            b"shipyard.model": record.model,
            b"shipyard.version": str(record.number),
            b"shipyard.sha256": record.sha256,
        }
        pq.write_table(table.replace_schema_metadata(meta), path)
    elif format == "csv":
        pacsv.write_csv(table, path)
    else:
        with path.open("wb") as out:
            for row in table.to_pylist():
                out.write(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` whole or not at all: to a temporary name, flushed, then renamed."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    _atomic(path, lambda p: p.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2)))
