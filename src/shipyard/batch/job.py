"""A batch job: a registered version run over files, part by part, each part committed on its own.

Every part's predictions are written to a temporary file and renamed into place, and only then listed
in the output folder's manifest (itself replaced whole), so a job killed at any moment leaves whole
parts and a manifest that names exactly them. Run again with the same arguments, it goes on after the
last part listed: the output ends with every input row once. Rows that cannot be read go to the part's
errors file, with the row number and why; past `max_errors` the job stops and says so.

The input is read and decoded a few batches ahead, on a thread, while the model runs on the others:
one run a core at once, each on one ONNX Runtime thread (runs.py says why).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa

from shipyard.batch import outputs
from shipyard.batch.ahead import ahead
from shipyard.batch.mapping import Features, Mapping
from shipyard.batch.outputs import FORMATS, Predictions
from shipyard.batch.runs import Runs, concurrently
from shipyard.batch.sources import Part, Source, open_source, part_rows_for
from shipyard.errors import Conflict, InvalidInput
from shipyard.machine import usable_cores
from shipyard.processing import graph_inputs
from shipyard.registry import Registry, VersionRecord, parse_ref
from shipyard.runtime.session import Runner, RunnerOptions

MANIFEST = "_manifest.json"
"""Named as readers of a folder of Parquet files (pyarrow, Spark, DuckDB) skip it, as they skip the
_errors files: the folder reads as one table of predictions."""
BATCH_BYTES = 1 << 20
"""A model run takes about this much input (at most MAX_BATCH_ROWS rows): batches large enough for ONNX
Runtime's kernels, small enough that a run's input and activations stay near the core's caches while
the reading thread decodes the next (the CNN over Parquet on an AVX-512 machine: 6% more rows a second
than with 4 MB, 3% more than with 512 KB; on an AVX2 one, as many as with 4 MB; the digits' batches
are MAX_BATCH_ROWS either way)."""
MAX_BATCH_ROWS = 4096
RELEASE_BYTES = 64 << 20
"""Arrow's unused memory is given back to the system each time about this much input has been read, so
a long job's memory stays a short one's. Not after every part: the pages given back came straight back
as page faults (the CNN over Parquet: ten a row, a third of its reading)."""
FIRST_ROWS = 256
ENGINES = ("local", "ray")


class Progress(Protocol):
    """Told how much there is to do, then of each part as it is committed."""

    def started(self, total: int | None, done: int) -> None: ...

    def committed(self, part: Part, rows: int) -> None: ...


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
    resumed_rows: int = 0
    """Of `rows`, those an earlier run wrote: not this run's work, so not in its rows a second."""

    @property
    def rows_per_s(self) -> float:
        return (self.rows - self.resumed_rows) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


@dataclass(frozen=True)
class Job:
    ref: str
    inputs: str
    output: Path
    format: str = "parquet"
    columns: tuple[tuple[str, ...], ...] | tuple[str, ...] | None = None
    """The feature columns of each model input, in input order (names alone: the one input's)."""
    keep: tuple[str, ...] = ()
    predictions: Predictions = field(default_factory=Predictions)
    part_rows: int = 0
    """Rows per output part; 0: as many as about 8 MB of input."""
    batch_rows: int = 0
    """Rows per model run; 0: as many as about 1 MB of model input (at most 4096)."""
    max_errors: float = 0
    """Rows that may fail: a count (1 or more), or a fraction of the rows read (below 1)."""
    threads: int = 0
    engine: str = "local"
    address: str | None = None
    """The Ray cluster to run on (engine "ray"); None: a local one."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.engine not in ENGINES:
            raise InvalidInput(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.part_rows < 0 or self.batch_rows < 0 or self.max_errors < 0 or self.threads < 0:
            raise InvalidInput("--part-rows, --max-errors and --threads must be 0 or more")
        if self.columns is not None and all(isinstance(c, str) for c in self.columns):
            object.__setattr__(self, "columns", (tuple(self.columns),))

    @property
    def groups(self) -> tuple[tuple[str, ...], ...] | None:
        return self.columns  # type: ignore[return-value]  # made groups by __post_init__

    def arguments(self) -> dict[str, Any]:
        """What a rerun must repeat to resume (the same rows in the same parts, the same columns)."""
        return {
            "inputs": self.inputs, "format": self.format,
            "columns": [list(c) for c in self.groups] if self.groups else None, "keep": list(self.keep),
            "predictions": asdict(self.predictions), "part_rows": self.part_rows,
        }  # fmt: skip

    def limit(self, rows: int) -> float:
        return self.max_errors if self.max_errors >= 1 else self.max_errors * rows


@dataclass(frozen=True)
class Plan:
    """What a job would do: the version, the input, how its columns feed the model, the first rows'
    predictions. Made without writing anything (a dry run), and by every run before it starts."""

    record: VersionRecord
    source: Source
    mapping: Mapping
    part_rows: int
    batch_rows: int
    preview: pa.Table

    def lines(self) -> list[str]:
        total = self.source.count_rows()
        rows = f"{total:,} rows" if total is not None else "rows not counted ahead"
        return [
            f"model: {self.record.ref} (sha256 {self.record.sha256[:12]})",
            f"input: {len(self.source.files)} {self.source.kind} files, {rows}, "
            f"{self.part_rows:,} rows a part",
            *(f"input {line}" for line in self.mapping.describe()),
            f"output: {', '.join(self.preview.column_names)}",
        ]


def plan(registry: Registry, job: Job, preview_rows: int = 5) -> Plan:
    """Check the job against its version and input on the first rows, and say what it would do."""
    record, source, mapping, first = _prepare(registry, job)
    runner = _runner(registry, record)
    try:
        preview = _preview(runner, record, job, mapping, first.slice(0, preview_rows))
    finally:
        runner.unload()
    return Plan(
        record, source, mapping, part_rows_for(source, job.part_rows), _batch_rows(job, record), preview
    )


def run(registry: Registry, job: Job, progress: Progress | None = None) -> Summary:
    """Run `job`, or go on with it where an earlier run of it stopped; the summary of the whole job."""
    if job.engine == "ray":
        from shipyard.batch.on_ray import run_on_ray

        return run_on_ray(registry, job, progress)
    record, source, mapping, first = _prepare(registry, job)
    runner = _runner(registry, record)
    try:
        _preview(runner, record, job, mapping, first.slice(0, 1))  # the model takes the mapped rows
        manifest = _manifest(job, record, source, part_rows_for(source, job.part_rows))
        done = {p["part"] for p in manifest["parts"]}
        rows = resumed = sum(p["rows"] for p in manifest["parts"])
        errors = sum(p["errors"] for p in manifest["parts"])
        if progress is not None:
            progress.started(source.count_rows(), rows)
        started, row_bytes, unreleased = time.perf_counter(), source.row_bytes, 0.0
        work = _decoded(source, mapping, manifest["part_rows"], _batch_rows(job, record), done)
        model = functools.partial(predict, runner, record)
        with ahead(work) as decoded, concurrently(_cores(job), model) as runs:
            for part, features, found in _predicted(decoded, runs):
                table = output_table(record, job.predictions, mapping, part.table, features, found)
                _commit(job, record, part, table, features.bad, manifest)
                unreleased += part.rows * row_bytes
                if unreleased >= RELEASE_BYTES:
                    pa.default_memory_pool().release_unused()
                    unreleased = 0.0
                rows, errors = rows + part.rows, errors + len(features.bad)
                if progress is not None:
                    progress.committed(part, rows)
                if errors > job.limit(rows):
                    raise InvalidInput(
                        f"{errors} rows could not be read, more than --max-errors {job.max_errors:g}: "
                        f"their numbers and reasons are in {job.output}/_errors-*.jsonl"
                    )
    finally:
        runner.unload()
    manifest["done"] = True
    outputs.write_json(job.output / MANIFEST, manifest)
    seconds = time.perf_counter() - started
    return Summary(
        record.model, record.number, rows, errors, seconds, len(manifest["parts"]), len(done),
        str(job.output), resumed,
    )  # fmt: skip


def _prepare(registry: Registry, job: Job) -> tuple[VersionRecord, Source, Mapping, pa.Table]:
    """The version, the input, and how the input's columns feed the model (chosen on its first rows)."""
    name, version = parse_ref(job.ref)
    record = registry.version(name, version)
    source = open_source(job.inputs)
    first = source.first_rows(FIRST_ROWS)
    keep = job.keep or (("path",) if source.kind == "image" else ())
    return record, source, Mapping.choose(record.signature, first, job.groups, keep), first


def _preview(runner: Runner, record: VersionRecord, job: Job, mapping: Mapping, rows: pa.Table) -> pa.Table:
    features = mapping.features(rows)
    return output_table(record, job.predictions, mapping, rows, features, predict(runner, record, features))


Chunk = tuple[Part, int, Features]
"""A part, where in it a batch of rows starts, and those rows read as model inputs."""


def _decoded(
    source: Source, mapping: Mapping, part_rows: int, batch_rows: int, done: set[int]
) -> Iterator[Chunk]:
    """The parts not yet done, a batch of rows at a time, read as model inputs (on the reading thread).
    Each part goes on with its kept columns alone: the rest of what was read is let go once the part's
    batches are made, not when the part is written."""
    for part in source.parts(part_rows):
        if part.number in done:
            continue
        kept = replace(part, table=part.table.select(list(mapping.keep)))
        for start in range(0, part.rows, batch_rows):
            yield kept, start, mapping.features(part.table.slice(start, batch_rows))


def _predicted(
    chunks: Iterator[Chunk], runs: Runs[Features, dict[str, np.ndarray]]
) -> Iterator[tuple[Part, Features, dict[str, np.ndarray]]]:
    """Each part's rows read (numbered within the part) and the model's outputs, the model run on each
    batch as it comes (its inputs let go once run): a part's whole inputs are never held."""
    read: list[tuple[int, Features]] = []
    found: list[dict[str, np.ndarray]] = []
    for (part, start, features), answers in runs.ordered((chunk, chunk[2]) for chunk in chunks):
        found.append(answers)
        read.append((start, Features({}, features.good, features.bad)))
        if start + len(features.good) + len(features.bad) < part.rows:
            continue
        good = np.concatenate([f.good + at for at, f in read])
        bad = [(at + row, why) for at, f in read for row, why in f.bad]
        yield part, Features({}, good, bad), {n: np.concatenate([f[n] for f in found]) for n in found[0]}
        read, found = [], []


def predict(runner: Runner, record: VersionRecord, features: Features) -> dict[str, np.ndarray]:
    """The model's outputs for the readable rows (none: empty outputs of the right shape). Shared with
    the Ray engine's actors, so both engines compute the same rows."""
    names = record.signature.output_names
    if not len(features.good):
        return {
            o.name: np.zeros((0, *(max(d, 1) for d in o.shape[1:])), np.float32)
            for o in record.signature.outputs
        }
    return dict(zip(names, runner.run_sync(features.inputs, names), strict=True))


def output_table(
    record: VersionRecord,
    predictions: Predictions,
    mapping: Mapping,
    rows: pa.Table,
    features: Features,
    found: dict[str, np.ndarray],
) -> pa.Table:
    """The output rows of the readable rows: their kept columns, then the predictions."""
    return pa.table({**outputs.kept(rows, mapping.keep, features.good), **predictions.columns(record, found)})


def _runner(registry: Registry, record: VersionRecord) -> Runner:
    """The version's session, run on one thread by each of the job's concurrent runs (runs.py)."""
    runner = Runner(record.ref, registry.artifact(record), RunnerOptions(intra_op_threads=1))
    runner.load()
    return runner


def _cores(job: Job) -> int:
    return job.threads or usable_cores()  # a job has the machine: every core, large batches


def _batch_rows(job: Job, record: VersionRecord) -> int:
    if job.batch_rows:
        return job.batch_rows
    row_bytes = sum(4 * int(np.prod(spec.shape[1:])) for spec in graph_inputs(record.signature))
    return int(min(MAX_BATCH_ROWS, max(1, BATCH_BYTES // max(1, row_bytes))))


def _manifest(job: Job, record: VersionRecord, source: Source, part_rows: int) -> dict[str, Any]:
    """The output folder's manifest: an earlier run's of this job (to go on with), or a new one."""
    path = job.output / MANIFEST
    wanted = {
        "model": record.model, "version": record.number, "sha256": record.sha256,
        "arguments": job.arguments(), "files": [str(p) for p in source.files], "part_rows": part_rows,
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


def _commit(
    job: Job,
    record: VersionRecord,
    part: Part,
    table: pa.Table,
    bad: list[tuple[int, str]],
    manifest: dict[str, Any],
) -> None:
    """Write the part's predictions and errors whole, then list it in the manifest."""
    name = f"part-{part.number:05d}{FORMATS[job.format]}"
    outputs.write(table, job.output / name, job.format, record)
    if bad:
        lines = b"".join(orjson.dumps({"row": part.first_row + i, "error": why}) + b"\n" for i, why in bad)
        outputs.atomic(job.output / f"_errors-{part.number:05d}.jsonl", lambda path: path.write_bytes(lines))
    entry = {
        "part": part.number,
        "file": name,
        "rows": part.rows,
        "predictions": table.num_rows,
        "errors": len(bad),
    }
    manifest["parts"].append(entry)
    outputs.write_json(job.output / MANIFEST, manifest)
