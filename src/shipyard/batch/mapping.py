"""Which input columns feed which model input, and the rows read as model inputs.

Each model input is fed by a group of columns: numbers, one per value (the digits' 64 pixels); or one
column that holds a row's values as a list (a Parquet list of 12,288 floats for a 3x64x64 image); or
one column of image bytes (a folder of images), decoded as the input's signature says. By default the
groups are the input's numeric, list and binary columns in order, but the kept ones: a model of one
input takes every numeric column (or the first list or image column), a model of several takes as many
columns as each input's width, in input order. `columns` names them, one group per input.

A row that cannot be read (a missing value, text that is not a number, a list of the wrong length, a
file that is not an image) is left out of the inputs and reported with why.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.datasets.images import decode, image_layout
from shipyard.datatypes import numpy_dtype
from shipyard.errors import InvalidInput
from shipyard.processing import ImageRecipe, graph_inputs, pixels, recipe_of
from shipyard.signature import Signature, TensorSpec, format_shape

Kind = Literal["numbers", "list", "image"]
MOSTLY = 0.9
"""A text column is a feature when this share of its values in the first rows read as numbers."""


@dataclass(frozen=True)
class Group:
    input: TensorSpec
    columns: tuple[str, ...]
    kind: Kind
    recipe: ImageRecipe | None = None
    """The version's image recipe, when this input takes pictures: decoded as the server decodes them
    (processing/image.py), into the graph's uint8 pixels."""

    @property
    def width(self) -> int:
        return math.prod(self.input.shape[1:])

    def describe(self) -> str:
        shown = ", ".join(self.columns) if len(self.columns) <= 4 else (
            f"{self.columns[0]}, {self.columns[1]}, ..., {self.columns[-1]}"
        )  # fmt: skip
        what = {
            "numbers": f"{len(self.columns)} columns",
            "list": "a list column",
            "image": "an image column",
        }
        return (
            f"{self.input.name} {format_shape(self.input.shape)} {self.input.datatype} "
            f"<- {what[self.kind]} ({shown})"
        )


@dataclass
class Features:
    """A table's rows read as model inputs: the inputs of the readable rows, their indexes in the
    table, and the others with why."""

    inputs: dict[str, np.ndarray]
    good: np.ndarray
    bad: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Mapping:
    groups: tuple[Group, ...]
    keep: tuple[str, ...]

    @classmethod
    def choose(
        cls,
        signature: Signature,
        first: pa.Table,
        columns: Sequence[Sequence[str]] | None,
        keep: Sequence[str],
    ) -> Mapping:
        """The groups for `signature`, named by `columns` or found in the `first` rows of the input."""
        inputs = graph_inputs(signature)  # what the graph takes: a recipe's pixels, not their bytes
        missing = [c for c in (*(c for g in columns or () for c in g), *keep) if c not in first.column_names]
        if missing:
            raise InvalidInput(
                f"the input has no column {missing[0]!r}; it has {', '.join(first.column_names)}"
            )
        for spec in inputs:
            if any(d < 1 for d in spec.shape[1:]):
                raise InvalidInput(
                    f"input {spec.name!r} has the shape {format_shape(spec.shape)}: a batch job feeds "
                    "inputs whose every dimension but the first is fixed"
                )
        if columns is not None:
            if len(columns) != len(inputs):
                names = ", ".join(s.name for s in inputs)
                plural = "s" if len(inputs) > 1 else ""
                raise InvalidInput(
                    f"the model takes {len(inputs)} input{plural} ({names}): give --columns once per input, "
                    "in order"
                )
            groups = tuple(_group(spec, tuple(c), first) for spec, c in zip(inputs, columns, strict=True))
        else:
            groups = _default_groups(inputs, first, keep)
        recipe = recipe_of(signature)
        if recipe is not None:
            groups = tuple(replace(g, recipe=recipe) if g.input.name == recipe.input else g for g in groups)
        for group in groups:
            _check_width(group, first)
        return cls(groups, tuple(keep))

    def features(self, table: pa.Table) -> Features:
        """The rows of `table` read as the model's inputs."""
        read = [_READERS[g.kind](g, table) for g in self.groups]
        bad = np.zeros(table.num_rows, dtype=bool)
        for values, _ in read:
            bad |= _unreadable(values)
        good = np.flatnonzero(~bad)
        reasons: list[tuple[int, str]] = []
        for row in np.flatnonzero(bad).tolist():
            reasons.append((row, _reason(self.groups, read, table, row)))
        everyone = len(good) == table.num_rows
        inputs = {
            g.input.name: (values if everyone else values[good])
            .reshape(-1, *g.input.shape[1:])
            .astype(numpy_dtype(g.input.datatype), copy=False)
            for g, (values, _) in zip(self.groups, read, strict=True)
        }
        return Features(inputs, good, reasons)

    def describe(self) -> list[str]:
        return [g.describe() for g in self.groups]


def _default_groups(inputs: Sequence[TensorSpec], first: pa.Table, keep: Sequence[str]) -> tuple[Group, ...]:
    candidates = [
        (name, kind) for name in first.column_names if name not in keep and (kind := _kind_of(first, name))
    ]
    groups: list[Group] = []
    for spec in inputs:
        if not candidates:
            raise InvalidInput(
                "the input has no numeric, list or image columns left for the model's input "
                f"{spec.name!r} (--columns names them)"
            )
        name, kind = candidates[0]
        if kind != "numbers":
            groups.append(Group(spec, (name,), kind))
            candidates.pop(0)
            continue
        numbers = [n for n, k in candidates if k == "numbers"]
        taken = numbers if len(inputs) == 1 else numbers[: math.prod(spec.shape[1:])]
        groups.append(Group(spec, tuple(taken), "numbers"))
        candidates = [c for c in candidates if c[0] not in taken]
    return tuple(groups)


def _group(spec: TensorSpec, columns: tuple[str, ...], first: pa.Table) -> Group:
    """An input's named columns: one list or image column, or numbers."""
    if len(columns) == 1:
        kind = _kind_of(first, columns[0])
        if kind in ("list", "image"):
            return Group(spec, columns, kind)
    return Group(spec, columns, "numbers")


def _kind_of(table: pa.Table, name: str) -> Kind | None:
    """How a column can feed an input: numbers (typed so, or text that mostly reads as numbers: a CSV
    column with one bad value is text, and its bad rows fail, not the column), lists of numbers, image
    bytes; None when it cannot."""
    kind = table.column(name).type
    if _is_number(kind):
        return "numbers"
    if _is_list(kind) and _is_number(kind.value_type):
        return "list"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "image"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = _numbers(table.column(name))
        if len(values) and np.mean(~np.isnan(values)) >= MOSTLY:
            return "numbers"
    return None


def _check_width(group: Group, first: pa.Table) -> None:
    spec = group.input
    if group.kind == "image":
        image_layout(spec)
        return
    if group.kind == "numbers":
        given = len(group.columns)
        for name in group.columns:
            if _kind_of(first, name) not in ("numbers", None):
                raise InvalidInput(
                    f"column {name!r} is not a column of numbers; give it alone for {spec.name!r}"
                )
    else:
        lengths = pc.list_value_length(first.column(group.columns[0])).drop_null()
        given = int(lengths[0].as_py()) if len(lengths) else group.width
    if given != group.width:
        raise InvalidInput(
            f"input {spec.name!r} takes {group.width} values a row ({format_shape(spec.shape)}); the "
            f"input gives {given}: --columns names the features, --keep takes id columns out of them"
        )


def _is_number(kind: Any) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


def _is_list(kind: Any) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind))


def _unreadable(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.isnan(values.reshape(len(values), -1)).any(axis=1))


Read = tuple[np.ndarray, list[str | None]]
"""A group's rows as float32 values [rows, width] (NaN where a row cannot be read), and per row why
not, where that is known at once (else worked out from the values when the row is reported)."""


def _read_numbers(group: Group, table: pa.Table) -> Read:
    values = np.stack([_numbers(table.column(name)) for name in group.columns], axis=1)
    return values, []


def _read_list(group: Group, table: pa.Table) -> Read:
    chunked = table.column(group.columns[0])  # most often one chunk: combining would copy it
    column = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    rows, width = len(column), group.width
    lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy(zero_copy_only=False)
    fits = lengths == width
    if fits.all() and pa.types.is_fixed_size_list(column.type):  # the usual: read as it lies
        return _floats(column.flatten()).reshape(rows, width), []
    values = np.full((rows, width), np.nan, dtype=np.float32)
    if fits.any():
        values[fits] = _floats(pc.list_flatten(column.filter(pa.array(fits)))).reshape(-1, width)
    why = [
        None if n == width else f"column {group.columns[0]!r} is missing" if n < 0 else
        f"column {group.columns[0]!r} holds {n} values, not {width}"
        for n in lengths.tolist()
    ]  # fmt: skip
    return values, why


def _read_images(group: Group, table: pa.Table) -> Read:
    column = table.column(group.columns[0]).to_pylist()
    values = np.full((len(column), group.width), np.nan, dtype=np.float32)
    why: list[str | None] = [None] * len(column)
    for i, data in enumerate(column):
        if data is None:
            why[i] = f"column {group.columns[0]!r} is missing"
            continue
        try:
            found = decode(data, group.input) if group.recipe is None else pixels(data, group.recipe, i)
            values[i] = found.reshape(-1)
        except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, struct.error, its bomb error
            why[i] = f"not an image: {str(exc)[:80] or type(exc).__name__}"
    return values, why


_READERS = {"numbers": _read_numbers, "list": _read_list, "image": _read_images}


def _floats(array: Any) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float32)


def _numbers(column: Any) -> np.ndarray:
    """A column as float32 values, NaN where one is missing or not a number."""
    if not _is_number(column.type):
        try:  # text, all of it numbers: read at once; else value by value, NaN where one is not
            column = pc.cast(column, pa.float32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _parse(column)
    return _floats(pc.cast(column, pa.float32(), safe=False))


def _parse(column: Any) -> np.ndarray:
    """A text column read as numbers one value at a time; NaN where a value is not one."""
    out = np.full(len(column), np.nan, dtype=np.float32)
    for i, value in enumerate(column.to_pylist()):
        with contextlib.suppress(TypeError, ValueError):
            out[i] = float(value)
    return out


def _reason(groups: Sequence[Group], read: Sequence[Read], table: pa.Table, row: int) -> str:
    for group, (values, why) in zip(groups, read, strict=True):
        if why and why[row]:
            return str(why[row])
        if not np.isnan(values[row]).any():
            continue
        if group.kind != "numbers":
            return f"column {group.columns[0]!r} holds NaN"
        for name in group.columns:
            value = table.column(name)[row].as_py()
            if value is None or value == "":
                return f"column {name!r} is missing"
            try:
                if math.isnan(float(value)):
                    return f"column {name!r} is NaN"
            except (TypeError, ValueError):
                return f"column {name!r} is not a number: {str(value)[:40]!r}"
    return "unreadable"
