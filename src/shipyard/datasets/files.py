"""Data from files, shaped the way the model's signature says (`load_data`), or as the rows a file
holds before any signature is known (`sample_rows`, for the numerical check of an import).

One reader for every use, so a model is checked, measured, calibrated and distilled on inputs built
the same way. Formats: .npz (X and y, or one array per input name), .npy (inputs only), CSV (with a
header; a numeric one without is all features) and Parquet with a label column, and a folder of images
with one sub-folder per class.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput, NotFound
from shipyard.registry import DatasetInfo
from shipyard.registry.artifacts import sha256_file
from shipyard.signature import Signature, TensorSpec

Array = npt.NDArray[Any]

X_KEYS = ("X", "x", "inputs", "input")
Y_KEYS = ("y", "labels", "label", "target", "targets")
LABEL_COLUMNS = ("label", "y", "target", "class")


@dataclass(frozen=True)
class Dataset:
    """Named model inputs (already of the signature's dtypes), their targets when known, and where
    they came from. `classes` is the class order a folder of images implies (sorted sub-folders)."""

    inputs: dict[str, Array]
    y: Array | None
    info: DatasetInfo
    classes: list[str] | None = None

    @property
    def rows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def sample(self, rows: int, seed: int = 0) -> Dataset:
        """Up to `rows` rows drawn without replacement, in their original order."""
        if rows >= self.rows:
            return self
        index = np.sort(np.random.default_rng(seed).choice(self.rows, size=rows, replace=False))
        return self.select(index)

    def select(self, index: Array | slice) -> Dataset:
        inputs = {name: array[index] for name, array in self.inputs.items()}
        return replace(self, inputs=inputs, y=None if self.y is None else self.y[index])

    def batches(self, size: int) -> list[dict[str, Array]]:
        return [{n: a[i : i + size] for n, a in self.inputs.items()} for i in range(0, self.rows, size)]


def load_data(
    path: Path,
    signature: Signature,
    *,
    label_column: str | None = None,
    need_labels: bool = True,
) -> Dataset:
    """Read `path` into inputs for `signature` (and targets, required unless `need_labels` is off)."""
    path = path.expanduser()
    if not path.exists():
        raise NotFound(f"no such data file or folder: {path}")
    if path.is_dir():
        from shipyard.datasets.images import load_folder

        images, names, classes = load_folder(path, _single_input(signature, path))
        return Dataset(images, names, folder_info(path), classes)
    suffix = path.suffix.lower()
    y: Array | None
    if suffix == ".npz":
        inputs, y = _npz(path, signature)
    elif suffix == ".npy":
        inputs, y = {_single_input(signature, path).name: _array(path)}, None
    elif suffix in (".csv", ".parquet", ".pq"):
        columns = _csv_columns(path) if suffix == ".csv" else _parquet_columns(path)
        features, y = _split_label(columns, label_column, path, need_labels)
        inputs = {_single_input(signature, path).name: features}
    else:
        raise InvalidInput(
            f"cannot read {path.name}: use .npz, .npy, .csv or .parquet, or a folder of class sub-folders"
        )
    if need_labels and y is None:
        raise InvalidInput(f"{path.name} has no targets: add y to the .npz (or a label column)")
    data = Dataset(_shaped(inputs, signature, path), y, dataset_info(path))
    if y is not None and len(y) != data.rows:
        raise InvalidInput(f"{path.name}: {data.rows} input rows but {len(y)} targets")
    if data.rows == 0:
        raise InvalidInput(f"{path.name} holds no rows")
    return data


def sample_rows(path: Path, rows: int = 64) -> Array | None:
    """Up to `rows` input rows of a data file, without a label column; None for a kind of file that
    holds no rows (an image folder, an unknown suffix): the check then generates its inputs."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {path.name}: {exc}") from None
        key = next((k for k in X_KEYS if k in arrays), None)
        key = key or next((k for k in arrays if k not in Y_KEYS), None)
        if key is None:
            raise InvalidInput(f"{path.name} holds no input array (X, or one not named like a target)")
        return np.asarray(arrays[key][:rows])
    if suffix == ".npy":
        return _array(path)[:rows]
    if suffix in (".csv", ".parquet", ".pq"):
        columns = _csv_columns(path) if suffix == ".csv" else _parquet_columns(path)
        features, _y = _split_label(columns, None, path, need_labels=False)
        return features[:rows].astype(np.float32)
    return None


def dataset_info(path: Path) -> DatasetInfo:
    return DatasetInfo(name=path.name, size=path.stat().st_size, sha256=sha256_file(path))


def folder_info(path: Path) -> DatasetInfo:
    """A folder identified by content: the hash of every file's relative path and hash."""
    digest, size = hashlib.sha256(), 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
        size += file.stat().st_size
    return DatasetInfo(name=path.name + "/", size=size, sha256=digest.hexdigest())


def _single_input(signature: Signature, path: Path) -> TensorSpec:
    if len(signature.inputs) != 1:
        names = ", ".join(spec.name for spec in signature.inputs)
        raise InvalidInput(
            f"the model has {len(signature.inputs)} inputs ({names}); give {path.name} as an .npz "
            "with one array per input name plus y"
        )
    return signature.inputs[0]


def _array(path: Path) -> Array:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from None


def _npz(path: Path, signature: Signature) -> tuple[dict[str, Array], Array | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from None
    y = next((arrays[k] for k in Y_KEYS if k in arrays), None)
    names = [spec.name for spec in signature.inputs]
    if all(name in arrays for name in names):
        return {name: arrays[name] for name in names}, y
    key = next((k for k in X_KEYS if k in arrays), None)
    if key is None:
        raise InvalidInput(f"{path.name} holds {sorted(arrays)}: expected X (and y) or the input names")
    return {_single_input(signature, path).name: arrays[key]}, y


def _csv_columns(path: Path) -> dict[str, list[str]]:
    """Columns by header name; a file whose first row is all numbers has no header (columns 0, 1, ...)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and _numeric(rows[0]):
        rows.insert(0, [str(i) for i in range(len(rows[0]))])
    if len(rows) < 2:
        raise InvalidInput(f"{path.name} needs a header row naming its columns and at least one data row")
    header, body = rows[0], rows[1:]
    if any(len(row) != len(header) for row in body):
        raise InvalidInput(f"{path.name}: every row must have the header's {len(header)} columns")
    return {name.strip(): [row[i] for row in body] for i, name in enumerate(header)}


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def _parquet_columns(path: Path) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise InvalidInput(f"cannot read {path.name} as Parquet: {exc}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _split_label(
    columns: dict[str, list[Any]], label_column: str | None, path: Path, need_labels: bool
) -> tuple[Array, Array | None]:
    wanted = (label_column,) if label_column else LABEL_COLUMNS
    label = next((name for name in wanted if name in columns), None)
    if label is None and (need_labels or label_column):
        raise InvalidInput(
            f"{path.name} has no label column {' or '.join(repr(w) for w in wanted)}: "
            f"its columns are {', '.join(list(columns)[:8])}{'...' if len(columns) > 8 else ''}"
        )
    y = _targets(columns.pop(label)) if label else None
    try:
        features = [np.asarray(values, dtype=np.float64) for values in columns.values()]
    except (TypeError, ValueError):
        raise InvalidInput(f"{path.name}: every column but the label must hold numbers") from None
    if not features:
        raise InvalidInput(f"{path.name} has no feature columns")
    # a Parquet column of lists (an image, an embedding) becomes several features
    return np.concatenate([f.reshape(len(f), -1) for f in features], axis=1), y


def _targets(values: list[Any]) -> Array:
    try:
        return np.asarray([float(v) for v in values])
    except (TypeError, ValueError):
        return np.asarray([str(v).strip() for v in values], dtype=object)


def _shaped(inputs: dict[str, Array], signature: Signature, path: Path) -> dict[str, Array]:
    shaped = {}
    for spec in signature.inputs:
        array = inputs[spec.name]
        fixed = spec.shape[1:]
        if all(d > 0 for d in fixed) and array.shape[1:] != fixed:
            if array.size != len(array) * int(np.prod(fixed)):  # flat rows are reshaped when they fit
                raise InvalidInput(
                    f"{path.name}: rows of {array.size // max(len(array), 1)} values do not fit "
                    f"input {spec.name!r} of shape {list(spec.shape)}"
                )
            array = array.reshape(len(array), *fixed)
        elif array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(fixed, array.shape[1:], strict=True)
        ):
            raise InvalidInput(
                f"{path.name}: rows of shape {list(array.shape[1:])} do not fit "
                f"input {spec.name!r} of shape {list(spec.shape)}"
            )
        shaped[spec.name] = np.ascontiguousarray(array.astype(numpy_dtype(spec.datatype), copy=False))
    return shaped
