"""Turn a batch of model inputs into a [rows, features] float matrix that drift scores can compare.

It runs on the server's hot path for every monitored batch, so it summarises instead of copying whole
tensors, and works out each input's layout and feature names once per shape (cached)::

    tabular  [N, F]              one feature per column: x[3]; past `max_columns` columns the rest is
                                 summarised by its mean: x[255:].mean
    scalar   [N]                 one feature: x
    images   [N, C, H, W], ...   mean and std per channel: x[ch0].mean, x[ch0].std (x.mean, x.std for one
                                 channel). Drift in brightness, contrast or colour, not in every pixel.
    BYTES    any shape           string lengths, then as above: len(x), len(x[3])

An image's channel axis is axis 1 when it is 1, 3 or 4 wide, else the last axis when that is, else the
whole sample is one channel. Inputs are taken in name order and every feature is named after its input,
so a model always gives the same names whatever order a request lists its inputs in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np

from shipyard.errors import InvalidInput

MAX_COLUMNS = 256
CHANNEL_WIDTHS = (1, 3, 4)
_NUMERIC_KINDS = "biuf"
_STRING_KINDS = "OSU"

Layout = Literal["scalar", "columns", "channels"]


class Features(NamedTuple):
    """Feature names (stable for a given model) and one row of float64 values per sample."""

    names: tuple[str, ...]
    values: np.ndarray


@dataclass(frozen=True)
class _Plan:
    """How one input becomes features; worked out once per (name, sample shape, kind)."""

    layout: Layout
    names: tuple[str, ...]
    kept: int = 0  # columns: how many columns are features of their own
    channel_axis: int | None = None  # channels: 1, -1, or None for a single channel
    lengths: bool = False  # BYTES: string lengths stand in for the values


def feature_matrix(inputs: Mapping[str, np.ndarray], max_columns: int = MAX_COLUMNS) -> Features:
    """The features of a batch: one row per sample, columns in the order of `Features.names`."""
    if not inputs:
        raise InvalidInput("no inputs to take features from")
    arrays = [(name, np.asarray(inputs[name])) for name in sorted(inputs)]
    specs = tuple((name, array.shape[1:], _is_text(name, array)) for name, array in arrays)
    plans, names = _plans(specs, max_columns)
    rows = {len(array) for _, array in arrays}
    if len(rows) != 1:
        raise InvalidInput(f"inputs have different batch sizes: {sorted(rows)}")
    blocks = [_apply(plan, array) for plan, (_, array) in zip(plans, arrays, strict=True)]
    values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    return Features(names, values)


def _is_text(name: str, array: np.ndarray) -> bool:
    """True for strings (measured by length), False for numbers; anything else is refused."""
    if array.ndim == 0:
        raise InvalidInput(f"input {name!r} has no batch axis")
    if array.dtype.kind in _NUMERIC_KINDS:
        return False
    if array.dtype.kind in _STRING_KINDS:
        return True
    raise InvalidInput(f"input {name!r}: cannot take features from dtype {array.dtype}")


@lru_cache(maxsize=512)
def _plans(
    specs: tuple[tuple[str, tuple[int, ...], bool], ...], max_columns: int
) -> tuple[tuple[_Plan, ...], tuple[str, ...]]:
    if max_columns < 2:
        raise InvalidInput(f"max_columns must be at least 2, got {max_columns}")
    plans = tuple(_plan(name, shape, lengths, max_columns) for name, shape, lengths in specs)
    return plans, tuple(name for plan in plans for name in plan.names)


def _plan(name: str, shape: tuple[int, ...], lengths: bool, max_columns: int) -> _Plan:
    if math.prod(shape) == 0:
        raise InvalidInput(f"input {name!r} has empty samples (shape {list(shape)})")
    if not shape:
        return _Plan("scalar", (_label(name, lengths),), lengths=lengths)
    if len(shape) == 1 or lengths:
        width = math.prod(shape)
        kept = width if width <= max_columns else max_columns - 1
        names = [_label(f"{name}[{j}]", lengths) for j in range(kept)]
        if kept < width:
            names.append(_label(f"{name}[{kept}:]", lengths) + ".mean")
        return _Plan("columns", tuple(names), kept=kept, lengths=lengths)
    axis: int | None = None
    if shape[0] in CHANNEL_WIDTHS:
        axis = 1
    elif shape[-1] in CHANNEL_WIDTHS:
        axis = -1
    channels = 1 if axis is None else shape[0 if axis == 1 else -1]
    prefixes = [name] if channels == 1 else [f"{name}[ch{c}]" for c in range(channels)]
    names = [f"{prefix}.{stat}" for prefix in prefixes for stat in ("mean", "std")]
    return _Plan("channels", tuple(names), channel_axis=axis)


def _label(text: str, lengths: bool) -> str:
    return f"len({text})" if lengths else text


def _apply(plan: _Plan, array: np.ndarray) -> np.ndarray:
    if plan.lengths:
        array = _string_lengths(array)
    n = len(array)
    if plan.layout == "scalar":
        return array.reshape(n, 1).astype(np.float64)
    if plan.layout == "columns":
        flat = array.reshape(n, -1)
        if plan.kept == flat.shape[1]:
            return flat.astype(np.float64)
        out = np.empty((n, plan.kept + 1))
        out[:, : plan.kept] = flat[:, : plan.kept]
        out[:, plan.kept] = flat[:, plan.kept :].mean(axis=1, dtype=np.float64)
        return out
    # channels: one contiguous float64 row of values per (sample, channel), then one pass for the sum and
    # one for the sum of squares (an einsum): several times faster than np.std, 10x for channels-last
    if plan.channel_axis == -1:
        grouped = np.ascontiguousarray(array.reshape(n, -1, array.shape[-1]).transpose(0, 2, 1), np.float64)
    else:
        grouped = np.asarray(
            array.reshape(n, 1 if plan.channel_axis is None else array.shape[1], -1), np.float64
        )
    mean = grouped.mean(axis=2)
    var = np.einsum("ncp,ncp->nc", grouped, grouped) / grouped.shape[2] - mean * mean
    out = np.empty((n, 2 * grouped.shape[1]))
    out[:, 0::2] = mean
    out[:, 1::2] = np.sqrt(np.maximum(var, 0.0))  # rounding can leave a tiny negative variance
    return out


def _string_lengths(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "SU":
        return np.char.str_len(array)
    try:
        flat = np.fromiter((len(item) for item in array.ravel()), dtype=np.float64, count=array.size)
    except TypeError:
        raise InvalidInput("BYTES inputs must hold strings or bytes") from None
    return flat.reshape(array.shape)


__all__ = ["CHANNEL_WIDTHS", "MAX_COLUMNS", "Features", "feature_matrix"]
