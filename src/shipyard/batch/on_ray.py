"""The same batch job on Ray Data: a local Ray's cores, or a cluster's machines.

    read_parquet / read_csv / read_json -> map_batches(_Predict, a pool of actors) -> write_parquet

The job is planned as the local engine plans it (job.plan: the version, the columns that feed each
input, the rows per model run), and each actor turns a batch of rows into output rows with the local
engine's own code, in a runtime session of its own: both engines write the same rows. The model's
bytes go to the actors through Ray's object store, not the registry, which the workers of a cluster
cannot see. Each actor is given `job.threads` cores (1 by default; a core of a node is left for the
reading and writing tasks) and runs ONNX Runtime on as many threads; Ray scales the pool up to as many
actors as the cluster has room for.

Where it differs from the local engine:

- It reads Parquet, CSV and JSONL (other inputs run on the local engine).
- Ray writes the output files (Parquet, CSV or JSONL; at least the job's part rows each), under names
  of its own, and does not say which rows a file holds, so a job cannot go on from where it stopped:
  the output folder must be new or empty (resuming is the local engine's).
- Ray reads files in blocks that do not know their row numbers: an unreadable row is reported in
  _errors.jsonl with its kept columns (`keep`: an id column names it) and why. The job stops once the
  errors pass `max_errors` (a fraction: of the rows, when the input counts them ahead, else checked at
  the end). The counts are kept by an actor the pool reports to; a batch Ray runs again (its worker
  lost) is counted again.
- Rows are written in input order as far as Ray keeps it (DataContext's preserve_order, set); read the
  output by an id column, not by position.
- On a cluster (`job.address`), every node needs shipyard installed and the input and output folders at
  the same paths (shared storage).

Ray is an optional extra (`pip install 'shipyard[ray]'`), imported only here, inside functions.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from shipyard.batch import outputs
from shipyard.batch.job import MANIFEST, Job, Plan, Progress, Summary, output_table, plan, predict
from shipyard.batch.mapping import Mapping
from shipyard.batch.outputs import FORMATS, Predictions
from shipyard.batch.sources import Source, csv_as_text
from shipyard.errors import Conflict, InvalidInput, Unavailable
from shipyard.runtime.session import Runner, RunnerOptions

if TYPE_CHECKING:
    from types import ModuleType

    from ray.data import Dataset

    from shipyard.registry import Registry, VersionRecord

ERRORS = "_errors.jsonl"
KINDS = ("parquet", "csv", "json")


def run_on_ray(registry: Registry, job: Job, progress: Progress | None = None) -> Summary:
    """Run `job` on Ray: a local one, started and stopped here, or the cluster at `job.address` (a Ray
    the caller has connected to already is used as it is). Ray Data shows its own progress on stderr;
    `progress` is not told."""
    ray = _import_ray()
    planned = plan(registry, job, preview_rows=1)
    if planned.source.kind not in KINDS:
        raise InvalidInput(
            f"--engine ray reads Parquet, CSV and JSONL, not {planned.source.kind} files: "
            "run them with --engine local"
        )
    if job.output.exists() and any(job.output.iterdir()):
        raise Conflict(
            f"{job.output} is not empty: --engine ray writes to a new folder (resuming a job is --engine "
            "local's)"
        )
    if job.address:
        _answers(job.address)
    job.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    owned = not ray.is_initialized()
    if owned:
        try:
            ray.init(address=job.address, include_dashboard=False)
        except ConnectionError as exc:
            raise Unavailable(f"cannot join the Ray cluster at {job.address}: {exc}") from None
    try:
        rows, errors, failed = _execute(ray, registry, job, planned)
    finally:
        if owned:
            ray.shutdown()
    files = _finish(job, planned, rows, errors, failed)
    seconds = time.perf_counter() - started
    record = planned.record
    return Summary(record.model, record.number, rows, len(errors), seconds, len(files), 0, str(job.output))


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InvalidInput("--engine ray needs Ray: pip install 'shipyard[ray]'") from None
    return ray


def _answers(address: str) -> None:
    """Fail at once when nothing listens at a cluster's HOST:PORT: ray.init would wait for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return  # ray://HOST:PORT (Ray Client), "auto": Ray says itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise Unavailable(f"no Ray cluster answers at {address} ({exc.strerror or exc})") from None


Errors = list[dict[str, Any]]
"""Unreadable rows: each its kept columns and why ("error")."""


def _execute(
    ray: ModuleType, registry: Registry, job: Job, planned: Plan
) -> tuple[int, Errors, Exception | None]:
    """Read, predict and write on Ray: the rows read, the unreadable ones and, when the run failed, why
    (the write's error: Ray wraps the actors' own in its types)."""
    record, source = planned.record, planned.source
    total = source.count_rows()
    fraction = 0 < job.max_errors < 1
    stop_after = float("inf") if fraction and total is None else job.limit(total or 0)
    tally = ray.remote(num_cpus=0)(_Tally).remote()
    cores, actors = _pool(ray, job.threads or 1)
    failed = None
    try:
        with _settings(ray):
            scored = _read(ray, source).map_batches(
                _Predict,
                fn_constructor_args=(
                    ray.put(registry.artifact(record)),  # once in the object store, for every actor
                    record, planned.mapping, job.predictions, job.format, max(1, int(cores)), tally,
                    stop_after,
                ),
                batch_size=planned.batch_rows,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                num_cpus=cores,
            )  # fmt: skip
            _write(scored, job.format, str(job.output), planned.part_rows)
    except Exception as exc:
        failed = exc
    rows, errors = ray.get(tally.totals.remote())
    return rows, errors, failed


def _pool(ray: ModuleType, threads: int) -> tuple[float, int]:
    """The cores each actor takes (and runs ONNX Runtime threads on), and the most actors: `threads`
    each, but a core of the largest node left for the reading and writing tasks (an actor that took
    them all would wait for input forever), and as many as the cluster has room for."""
    nodes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]
    largest, total = max(nodes, default=1.0), sum(nodes)
    cores = min(float(threads), largest - 1 if largest > 1 else largest / 2)
    return cores, max(1, int((total - 1) // cores))


@contextmanager
def _settings(ray: ModuleType) -> Iterator[None]:
    """Ray Data's settings for a job, the caller's put back after: the input's order kept as far as
    Ray can; Parquet read by Ray's first reader where it has the choice (use_datasource_v2): the
    second one lists the files in a task that slept ~5 s each job on Ray 2.60, whatever the input."""
    context = ray.data.DataContext.get_current()
    ordered, v2 = context.execution_options.preserve_order, getattr(context, "use_datasource_v2", None)
    context.execution_options.preserve_order = True
    if v2 is not None:
        context.use_datasource_v2 = False
    try:
        yield
    finally:
        context.execution_options.preserve_order = ordered
        if v2 is not None:
            context.use_datasource_v2 = v2


def _read(ray: ModuleType, source: Source) -> Dataset:
    """The files as the local engine reads them: the same list (no file discovery, no partition
    columns), CSV as text."""
    files = [str(p) for p in source.files]
    common: dict[str, Any] = {"partitioning": None, "file_extensions": None}
    if source.kind == "parquet":
        return ray.data.read_parquet(files, **common)  # type: ignore[no-any-return]
    if source.kind == "csv":
        return ray.data.read_csv(  # type: ignore[no-any-return]
            files, convert_options=csv_as_text(source.files[0]), **common
        )
    return ray.data.read_json(files, **common)  # type: ignore[no-any-return]


def _write(scored: Dataset, format: str, path: str, part_rows: int) -> None:
    """The output files, at least `part_rows` rows each; JSONL as the local engine writes it (Ray's
    write_json goes through pandas, which rounds floats to 10 digits)."""
    if format == "parquet":
        scored.write_parquet(path, min_rows_per_file=part_rows)
    elif format == "csv":
        scored.write_csv(path, min_rows_per_file=part_rows)
    else:
        from ray.data.datasource import BlockBasedFileDatasink

        class JsonLines(BlockBasedFileDatasink):
            def write_block_to_file(self, block: Any, file: Any) -> None:
                file.writelines(outputs.json_lines(block.to_arrow()))

        scored.write_datasink(JsonLines(path, min_rows_per_file=part_rows, file_format="jsonl"))


def _finish(job: Job, planned: Plan, rows: int, errors: Errors, failed: Exception | None) -> list[str]:
    """The errors file and the manifest; the output files' names. Raises the run's error, or says the
    errors passed --max-errors."""
    if errors:
        lines = b"".join(orjson.dumps(e, default=str) + b"\n" for e in errors)
        outputs.atomic(job.output / ERRORS, lambda path: path.write_bytes(lines))
    over = len(errors) > job.limit(rows)
    suffix = FORMATS[job.format]
    files = sorted(p.name for p in job.output.iterdir() if p.suffix == suffix and p.name[0] not in "._")
    record = planned.record
    outputs.write_json(
        job.output / MANIFEST,
        {
            "model": record.model, "version": record.number, "sha256": record.sha256, "engine": "ray",
            "arguments": {**job.arguments(), "engine": "ray"},  # not a local job's: never resumed as one
            "files": [str(p) for p in planned.source.files], "part_rows": planned.part_rows,
            "rows": rows, "errors": len(errors), "parts": [{"file": name} for name in files],
            "done": failed is None and not over,
        },
    )  # fmt: skip
    if over:
        raise InvalidInput(
            f"{len(errors)} rows could not be read, more than --max-errors {job.max_errors:g}: "
            f"their kept columns and reasons are in {job.output / ERRORS}"
        )
    if failed is not None:
        raise failed
    return files


class _Tally:
    """The rows read and the unreadable ones, from every actor of the pool (a Ray actor of its own)."""

    def __init__(self) -> None:
        self._rows = 0
        self._errors: list[dict[str, Any]] = []

    def add(self, rows: int, errors: list[dict[str, Any]]) -> int:
        self._rows += rows
        self._errors += errors
        return len(self._errors)

    def totals(self) -> tuple[int, list[dict[str, Any]]]:
        return self._rows, self._errors


class _Predict:
    """A pool actor: the version loaded once, then batches of input rows turned into output rows."""

    def __init__(
        self,
        model: Any,
        record: VersionRecord,
        mapping: Mapping,
        predictions: Predictions,
        format: str,
        threads: int,
        tally: Any,
        stop_after: float,
    ) -> None:
        import ray

        self._record, self._mapping, self._predictions = record, mapping, predictions
        self._format, self._tally, self._stop_after = format, tally, stop_after
        self._runner = Runner(record.ref, ray.get(model), RunnerOptions(intra_op_threads=threads))
        self._runner.load()

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        features = self._mapping.features(batch)
        found = predict(self._runner, self._record, features)
        table = output_table(self._record, self._predictions, self._mapping, batch, features, found)
        keep = self._mapping.keep
        errors = [
            {**{name: batch.column(name)[row].as_py() for name in keep}, "error": why}
            for row, why in features.bad
        ]
        if ray.get(self._tally.add.remote(batch.num_rows, errors)) > self._stop_after:
            raise InvalidInput("more rows could not be read than --max-errors allows")
        return _for_format(table, self._format, self._record)


def _for_format(table: pa.Table, format: str, record: VersionRecord) -> pa.Table:
    """Parquet with the version in its metadata, CSV with its lists as JSON text: as the local engine
    writes them."""
    if format == "parquet":
        return table.replace_schema_metadata(outputs.metadata(record))
    return outputs.lists_as_text(table) if format == "csv" else table
