"""Cron expressions, as schedules give them (croniter reads them; this keeps to the common form).

Five fields, minute hour day-of-month month day-of-week, or one of croniter's @-words (@hourly,
@daily, @weekly, @monthly, @yearly). croniter also takes six and seven fields (seconds, years): they
are refused, so an expression means what it means to cron(8).

Times are read in the local time zone of the process, as cron reads them: the arithmetic is done on
the naive local clock and each result placed on the time line by the C library, so "0 2 * * *" is
02:00 on both sides of a daylight-saving change. A time the clocks skip (02:30 on the night they go
forward) comes as late as the jump (03:30); a time they pass twice comes at its first passing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import CroniterBadDateError, CroniterError, croniter

from shipyard.errors import InvalidInput

WORDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
FORM = "five fields (minute hour day-of-month month day-of-week, e.g. '0 2 * * *') or one of " + ", ".join(
    WORDS
)


def check_cron(cron: str) -> str:
    """`cron`, spaces tidied, when it is a five-field expression or an @-word that names some time;
    InvalidInput saying the form otherwise."""
    text = " ".join(cron.split())
    if text not in WORDS and len(text.split(" ")) != 5:
        raise InvalidInput(f"bad cron expression {cron!r}: use {FORM}")
    try:
        croniter(text).get_next(datetime)  # "0 2 30 2 *" parses, but no day is ever February 30
    except CroniterBadDateError:
        raise InvalidInput(f"bad cron expression {cron!r}: no date ever matches it") from None
    except (CroniterError, ValueError) as exc:
        raise InvalidInput(f"bad cron expression {cron!r}: {exc}; use {FORM}") from None
    return text


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time strictly after `after` that `cron` names (timezone-aware, local)."""
    times = croniter(cron, after.astimezone().replace(tzinfo=None))
    while True:
        found = _placed(times.get_next(datetime))
        if found > after:
            return found


def last_fire(cron: str, at: datetime) -> datetime:
    """The last time at or before `at` that `cron` names (timezone-aware, local)."""
    times = croniter(cron, at.astimezone().replace(tzinfo=None) + timedelta(microseconds=1))
    while True:
        found = _placed(times.get_prev(datetime))
        if found <= at:
            return found


def _placed(naive: datetime) -> datetime:
    """A naive local time on the time line; one the clocks skip, as late as the jump."""
    placed = naive.astimezone()
    if placed.replace(tzinfo=None) != naive:  # in the gap: fold=1 reads it with the offset after
        placed = naive.replace(fold=1).astimezone()
    return placed
