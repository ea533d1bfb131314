"""What a batch job reads: files (Parquet, CSV, JSONL, Avro, .npy, .npz, images), streamed as record
batches and cut into parts of a fixed number of rows, so that part k is the same rows on every run of
the job (what makes a job resumable) and memory holds one part at a time, whatever the size of the input.

Every format reads as a table: an array file as columns f0, f1, ...; images as the columns `path` (the
file, relative to the folder given) and `image` (its bytes, decoded later, by the model's signature).
A part is the table's rows as read; turning them into model inputs is the mapping's work (mapping.py).
"""

from __future__ import annotations

import csv
import functools
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.json as pajson
import pyarrow.parquet as pq

from shipyard.datasets.files import X_KEYS
from shipyard.datasets.images import SUFFIXES as IMAGE_SUFFIXES
from shipyard.errors import InvalidInput, NotFound

TABLES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}
KINDS = {
    **TABLES, ".avro": "avro", ".npy": "npy", ".npz": "npz", **dict.fromkeys(IMAGE_SUFFIXES, "image"),
}  # fmt: skip
PART_BYTES = 8 << 20
"""A part holds about this much input, read (when the job does not set its rows): some 30,000 rows of
a small tabular model, a hundred and more images. Small enough that a job reaches its peak memory
within its first parts (a 2 GB input peaked 2-3% above a 100 MB one; with 16 MB parts 9-13%, what a
few parts in flight on the reading, running and writing threads add), large enough for few files."""
READ_BYTES = 8 << 20
"""Bytes read at a time from a file (pyarrow's batch size, in rows, follows from the rows' size)."""
MAX_PART_ROWS = 100_000
IMAGE_BATCH = 256


@dataclass(frozen=True)
class Part:
    number: int
    first_row: int
    """The input row number of its first row (counting every row of every input file)."""
    table: pa.Table

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


@dataclass(frozen=True)
class Source:
    """The input files of a job, all of one kind, with where they were found (images' paths are
    given relative to it)."""

    files: tuple[Path, ...]
    kind: str
    root: Path

    @functools.cached_property
    def row_bytes(self) -> float:
        """About how many bytes a row takes once read (from the first rows), to size parts and reads:
        read once, as parts, reads and a job's memory all size by it."""
        for batch in self._batches(64):
            if batch.num_rows:
                return max(1.0, int(batch.nbytes) / int(batch.num_rows))
        return 1.0

    def count_rows(self) -> int | None:
        """The rows of the input when the files say it cheaply (Parquet's footers, array shapes, image
        files); None for text formats, which would have to be read whole to know."""
        if self.kind == "parquet":
            return int(ds.dataset([str(p) for p in self.files], format="parquet").count_rows())
        if self.kind == "image":
            return len(self.files)
        if self.kind == "npy":
            return sum(int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0]) for p in self.files)
        return None

    def parts(self, part_rows: int) -> Iterator[Part]:
        """The input cut into parts of `part_rows` rows (the last one shorter), in file order."""
        read_rows = int(min(65_536, max(16, READ_BYTES // self.row_bytes)))
        buffered: list[pa.RecordBatch] = []
        held = number = first = 0
        for batch in self._checked(read_rows):
            buffered.append(batch)
            held += batch.num_rows
            while held >= part_rows:
                table = pa.Table.from_batches(buffered)
                yield Part(number, first, table.slice(0, part_rows))
                rest = table.slice(part_rows)
                buffered, held = rest.to_batches(), rest.num_rows
                number, first = number + 1, first + part_rows
        if held:
            yield Part(number, first, pa.Table.from_batches(buffered))

    def first_rows(self, rows: int) -> pa.Table:
        """The input's first rows (for choosing columns, and for a dry run)."""
        batches, held = [], 0
        for batch in self._checked(rows):
            batches.append(batch)
            held += batch.num_rows
            if held >= rows:
                break
        if not batches:
            raise InvalidInput(f"{self.files[0]}: no rows to read")
        return pa.Table.from_batches(batches).slice(0, rows)

    def _checked(self, rows: int) -> Iterator[pa.RecordBatch]:
        """The batches, all of the first one's columns (a part is one table), or a clear error."""
        schema: pa.Schema | None = None
        for batch in self._batches(rows):
            schema = schema or batch.schema
            if batch.schema != schema:
                raise InvalidInput(
                    f"the input files' columns differ ({_columns(schema)} then {_columns(batch.schema)}): "
                    "give files of one layout"
                )
            yield batch

    def _batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        if self.kind in ("npy", "npz"):
            for path in self.files:
                yield from _array_batches(path, rows)
        elif self.kind == "avro":
            for path in self.files:
                yield from _avro_batches(path, rows)
        elif self.kind == "image":
            yield from self._image_batches(min(rows, IMAGE_BATCH))
        else:
            for path in self.files:
                yield from _table_batches(path, self.kind, rows)

    def _image_batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        schema = pa.schema([("path", pa.string()), ("image", pa.binary())])
        for start in range(0, len(self.files), rows):
            files = self.files[start : start + rows]
            paths = [str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p) for p in files]
            yield pa.RecordBatch.from_arrays(
                [pa.array(paths), pa.array([p.read_bytes() for p in files])], schema=schema
            )


def open_source(pattern: str) -> Source:
    """The files a job reads: a file, a folder's files (sorted, sub-folders too: a folder of images
    per class reads whole), or a glob (sorted)."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) and not _hidden(p, path))
        root = path
    elif path.exists():
        found, root = [path], path.parent
    else:
        found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
        root = Path(glob.escape(pattern)).parent if not glob.has_magic(pattern) else _stem(pattern)
    if not found:
        raise NotFound(f"no input files at {pattern!r}")
    kinds = {_kind(p) for p in found}
    if None in kinds:
        odd = next(p for p in found if _kind(p) is None)
        raise InvalidInput(f"{odd.name}: not a batch input (Parquet, CSV, JSONL, Avro, .npy, .npz or images)")
    if len(kinds) > 1:
        raise InvalidInput(
            f"the inputs mix formats ({', '.join(sorted(str(k) for k in kinds))}): give one kind"
        )
    return Source(tuple(found), str(kinds.pop()), root)


def _columns(schema: pa.Schema) -> str:
    shown = ", ".join(f"{f.name}: {f.type}" for f in list(schema)[:4])
    return shown + (", ..." if len(schema) > 4 else "")


def _kind(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _stem(pattern: str) -> Path:
    """The folder a glob starts from (its path up to the first wildcard)."""
    parts = Path(pattern).parts
    fixed = parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]
    return Path(*fixed) if fixed else Path(".")


def _table_batches(path: Path, kind: str, rows: int) -> Iterator[pa.RecordBatch]:
    """A table file's record batches, read as they are asked for: pyarrow's dataset scanner reads a
    file's row groups ahead of its consumer (the whole file, seen here), a job's memory with it."""
    try:
        if kind == "parquet":
            yield from _parquet_batches(path, rows)
        elif kind == "csv":
            block = pacsv.ReadOptions(block_size=READ_BYTES)
            yield from pacsv.open_csv(path, read_options=block, convert_options=csv_as_text(path))
        else:
            yield from pajson.open_json(path, read_options=pajson.ReadOptions(block_size=READ_BYTES))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{path.name}: cannot be read as {kind}: {exc}") from None


def _parquet_batches(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """pyarrow's threads decode a row group's columns in parallel: worth it where the bytes are spread
    over many columns (the job over the digits' 65 columns: 16% more rows a second), not where one
    column holds them (the CNN's images: 4% fewer; handing over between threads only slows). A file
    read on the reading thread alone is read in steps that stay in the core's cache while it decodes
    them (the CNN: 3% more rows a second than with 1 MB); many columns, each in one step where it fits
    (the digits: 9% more than with 256 KB)."""
    metadata = pq.read_metadata(path)
    spread = _spread(metadata)
    step = (1 << 20) if spread else (256 << 10)
    file = pq.ParquetFile(path, metadata=metadata, pre_buffer=False, buffer_size=step)
    yield from file.iter_batches(batch_size=rows, use_threads=spread)


def _spread(metadata: pq.FileMetaData) -> bool:
    """Whether no one column holds most of the file's bytes (judged on its first row group)."""
    if not metadata.num_row_groups:
        return True
    group = metadata.row_group(0)
    sizes = [int(group.column(i).total_uncompressed_size) for i in range(group.num_columns)]
    return max(sizes, default=0) < 0.9 * sum(sizes)


def csv_as_text(path: Path) -> pacsv.ConvertOptions:
    """CSV read with every column as text (empty, NA and the like as missing): types guessed from a
    file's first block would fail the whole job on a bad value further down; as text, a bad value
    fails its row only (mapping.py reads the numbers)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True)


def _array_batches(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """An array file's rows as record batches of columns f0, f1, ... (a .npz: its X, or its only array)."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as npz:
            names = [k for k in X_KEYS if k in npz.files] or npz.files
            if len(names) != 1 and not set(X_KEYS) & set(npz.files):
                raise InvalidInput(f"{path.name}: holds {len(npz.files)} arrays; name the inputs X")
            array = npz[names[0]]
    if array.ndim < 1 or not np.issubdtype(array.dtype, np.number):
        raise InvalidInput(f"{path.name}: not an array of numbers, one row per sample")
    flat = array.reshape(len(array), -1)
    names = [f"f{i}" for i in range(flat.shape[1])]
    for start in range(0, len(flat), rows):
        chunk = np.asarray(flat[start : start + rows], dtype=np.float32)
        yield pa.RecordBatch.from_arrays([pa.array(chunk[:, i]) for i in range(chunk.shape[1])], names=names)


def _avro_batches(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """An Avro file's records as record batches (fastavro reads a record at a time; pyarrow types them)."""
    try:
        import fastavro
    except ImportError:  # pragma: no cover - a dependency; kept lazy, as only Avro jobs read it
        raise InvalidInput("reading Avro needs fastavro: pip install fastavro") from None
    with path.open("rb") as handle:
        try:
            reader = fastavro.reader(handle)
        except ValueError as exc:
            raise InvalidInput(f"{path.name}: not an Avro file ({exc})") from None
        records: list[dict[str, object]] = []
        schema = None  # the first records' types, kept: later records that miss a value stay typed
        for record in reader:
            records.append(record)  # type: ignore[arg-type]
            if len(records) == rows:
                batch = pa.RecordBatch.from_pylist(records, schema=schema)
                schema, records = batch.schema, []
                yield batch
        if records:
            yield pa.RecordBatch.from_pylist(records, schema=schema)


def part_rows_for(source: Source, wanted: int) -> int:
    """Rows per part: as the job asks, or as many as fit PART_BYTES (at most MAX_PART_ROWS)."""
    if wanted:
        return wanted
    return int(min(MAX_PART_ROWS, max(1, PART_BYTES // source.row_bytes)))
