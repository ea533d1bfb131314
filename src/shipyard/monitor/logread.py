"""Reading the prediction log back: a model's records in a time range, oldest first, as a pyarrow Table.

Times are given as datetimes, or as text: a duration back from now (``30m``, ``1h``, ``2d``,
``1h30m``) or an ISO 8601 time (``2025-01-31T12:00:00Z``; without a zone it is UTC). Files wholly
outside the range are skipped by their names, unopened; temporary files are never read.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.errors import InvalidInput
from shipyard.monitor.logfiles import SCHEMA, file_span, model_dir

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeSpec = datetime | timedelta | str


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w``, or a sum such as ``1h30m``."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise InvalidInput(
            f"invalid duration {text!r}: expected a number and a unit (s, m, h, d or w), "
            "e.g. 30m, 1h, 2d or 1h30m"
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(compact))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidInput(f"invalid duration {text!r}: too long") from None


def parse_time(value: TimeSpec, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from a datetime, a duration back from `now`, or text (duration or ISO 8601)."""
    now = datetime.now(UTC) if now is None else now
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, timedelta):
        return now - value
    text = value.strip()
    if text[:1].isdigit() and _DURATION.fullmatch(text.lower()):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"invalid time {value!r}: give a duration back from now (30m, 1h, 2d) "
            "or an ISO 8601 time (2025-01-31T12:00:00Z)"
        ) from None
    return parse_time(moment)


def read_predictions(
    root: str | os.PathLike[str],
    model: str,
    since: TimeSpec | None = None,
    until: TimeSpec | None = None,
    *,
    now: datetime | None = None,
) -> pa.Table:
    """The records of `model` with ``since <= time < until`` (either bound optional), oldest first.

    A model with no log yet gives an empty table with the log's schema.
    """
    start = None if since is None else _micros(parse_time(since, now))
    end = None if until is None else _micros(parse_time(until, now))
    folder = model_dir(root, model)
    spans: list[tuple[str, int, int]] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        span = file_span(entry.name)
        if span is None:  # temporary or foreign files
            continue
        oldest, newest = span
        if (start is not None and newest < start) or (end is not None and oldest >= end):
            continue
        spans.append((entry.path, oldest, newest))
    tables = []
    for path, _, _ in sorted(spans, key=lambda s: (s[1], s[2], s[0])):
        try:
            tables.append(pq.read_table(path, schema=SCHEMA))
        except FileNotFoundError:  # removed since listed (retention)
            continue
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    if start is not None:
        table = table.filter(pc.field("time") >= pa.scalar(start, SCHEMA.field("time").type))
    if end is not None:
        table = table.filter(pc.field("time") < pa.scalar(end, SCHEMA.field("time").type))
    return table.sort_by("time")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


__all__ = ["TimeSpec", "parse_duration", "parse_time", "read_predictions"]
