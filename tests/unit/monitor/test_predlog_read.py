"""Reading time ranges back: durations and times as a user types them, with errors that say what to type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shipyard.errors import InvalidInput
from shipyard.monitor.logread import parse_duration, parse_time

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        (" 2D ", timedelta(days=2)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "h", "5", "5x", "-1h", "1 h", "1h-", "1.h", "one hour", "1h 30m", "1e3s"]
)
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(
        InvalidInput, match=r"invalid duration .*: expected a number and a unit \(s, m, h, d or w\)"
    ):
        parse_duration(text)


def test_an_absurd_duration_is_refused() -> None:
    with pytest.raises(InvalidInput, match="too long"):
        parse_duration("99999999999d")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1h", NOW - timedelta(hours=1)),
        (timedelta(minutes=5), NOW - timedelta(minutes=5)),
        ("2025-01-30T08:00:00Z", datetime(2025, 1, 30, 8, tzinfo=UTC)),
        ("2025-01-30T10:00:00+02:00", datetime(2025, 1, 30, 8, tzinfo=UTC)),
        ("2025-01-30T08:00", datetime(2025, 1, 30, 8, tzinfo=UTC)),  # no zone: UTC
        ("2025-01-30", datetime(2025, 1, 30, tzinfo=UTC)),
        (datetime(2025, 1, 30, 8), datetime(2025, 1, 30, 8, tzinfo=UTC)),
        (datetime(2025, 1, 30, 9, tzinfo=timezone(timedelta(hours=1))), datetime(2025, 1, 30, 8, tzinfo=UTC)),
    ],
)
def test_times(value: str | timedelta | datetime, expected: datetime) -> None:
    got = parse_time(value, now=NOW)
    assert got == expected and got.tzinfo == UTC


def test_now_defaults_to_the_current_time() -> None:
    before = datetime.now(UTC)
    got = parse_time("1h")
    assert before - timedelta(hours=1) <= got <= datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize("text", ["yesterday", "5x", "-1h", "2025-13-01", ""])
def test_bad_times_name_both_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"invalid time .*duration back from now .*ISO 8601"):
        parse_time(text, now=NOW)
