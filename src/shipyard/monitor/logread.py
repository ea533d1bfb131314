"""Reading the prediction log back: a model's records in a time range, oldest first, as a pyarrow Table;
and the predictions with given ids, newest files first, for feedback that arrives after its prediction
left the in-memory index.

Times are given as datetimes, or as text: a duration back from now (``30m``, ``1h``, ``2d``,
``1h30m``) or an ISO 8601 time (``2025-01-31T12:00:00Z``; without a zone it is UTC). Files wholly
outside the range are skipped by their names, unopened; temporary files are never read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.errors import InvalidInput
from shipyard.monitor.logfiles import FILE_NAME, SCHEMA, file_span, model_dir, stamp
from shipyard.monitor.recent import RecentPrediction

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeSpec = datetime | timedelta | str

LOOKUP_MAX_FILES = 1_000
"""Most files one feedback lookup reads. Files close every 5 s under steady traffic, so this reaches
back about 80 minutes then (further when traffic pauses); reading the ids of a file of 5,000 records
takes 2 to 5 ms, so a lookup that finds nothing blocks its thread for a few seconds at most."""
LOOKUP_MAX_AGE = timedelta(days=7)
"""Files whose newest record is older than this are not searched for feedback."""
_LOOKUP_COLUMNS = ["request_id", "model", "version", "class"]


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


def find_predictions(
    root: str | os.PathLike[str],
    model: str,
    ids: Collection[str],
    *,
    max_files: int = LOOKUP_MAX_FILES,
    max_age: timedelta = LOOKUP_MAX_AGE,
    now: datetime | None = None,
) -> dict[str, RecentPrediction]:
    """The logged predictions of `model` with these ids (the newest record of an id wins).

    Reads the id, version and class columns of the newest files first and stops when every id is found,
    after `max_files` files, or at files older than `max_age`: ids not found in them are left out.
    Blocking (disk reads): call it from a worker thread, never the event loop.
    """
    wanted = set(ids)
    if not wanted:
        return {}
    folder = model_dir(root, model)
    cutoff = stamp(_micros(parse_time(max_age, now)))
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return {}
    newest_first = sorted(
        ((m.group(2), name) for name in names if (m := FILE_NAME.match(name)) and m.group(2) >= cutoff),
        reverse=True,
    )
    found: dict[str, RecentPrediction] = {}
    for _, name in newest_first[:max_files]:
        try:
            file = pq.ParquetFile(folder / name)
            request_ids = file.read(columns=["request_id"], use_threads=False)["request_id"]
            hit = pc.is_in(request_ids, value_set=pa.array(list(wanted), pa.string()))
            if not pc.any(hit).as_py():  # the usual case: only the ids were read
                continue
            rows = file.read(columns=_LOOKUP_COLUMNS, use_threads=False).filter(hit).to_pylist()
        except FileNotFoundError:  # removed since listed (retention)
            continue
        except (OSError, ValueError) as exc:  # a damaged file must not fail the feedback of the others
            log.warning("prediction log: %s could not be read: %s", folder / name, exc)
            continue
        for row in reversed(rows):  # rows are in time order: the last is the newest
            request_id = row["request_id"]
            if request_id in wanted and row["model"] == model:
                found[request_id] = RecentPrediction(model, int(row["version"]), row["class"])
                wanted.discard(request_id)
        if not wanted:
            break
    return found


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


__all__ = [
    "LOOKUP_MAX_AGE",
    "LOOKUP_MAX_FILES",
    "TimeSpec",
    "find_predictions",
    "parse_duration",
    "parse_time",
    "read_predictions",
]
