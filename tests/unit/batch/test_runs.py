"""Concurrent model runs answered in order (batch/runs.py), on real threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shipyard.batch.runs import concurrently

WAIT_S = 10.0
"""Long enough never to be reached when the code works; a hang becomes a failure instead."""


def test_answers_come_in_the_order_given_whichever_run_ends_first() -> None:
    first_may_end = threading.Event()

    def work(item: int) -> int:
        if item == 0:  # the first run ends only after the second has
            assert first_may_end.wait(WAIT_S)
        if item == 1:
            first_may_end.set()
        return item * 10

    with concurrently(2, work) as runs:
        assert list(runs.ordered((i, i) for i in range(6))) == [(i, i * 10) for i in range(6)]


def test_runs_happen_at_once() -> None:
    together = threading.Barrier(3, timeout=WAIT_S)  # passes only with three runs in flight

    def work(item: int) -> int:
        together.wait()
        return item

    with concurrently(3, work) as runs:
        assert [answer for _, answer in runs.ordered((i, i) for i in range(3))] == [0, 1, 2]


def test_the_items_are_read_only_as_far_as_there_is_room() -> None:
    read: list[int] = []
    release = threading.Event()

    def items() -> Iterator[tuple[int, int]]:
        for i in range(100):
            read.append(i)
            yield i, i

    def work(item: int) -> int:
        assert release.wait(WAIT_S)
        return item

    with concurrently(2, work) as runs:
        answers = runs.ordered(items())
        release.set()
        assert next(answers) == (0, 0)
        assert len(read) == 3  # two running, one waiting: memory holds a few batches, whatever the input
        assert [key for key, _ in answers] == list(range(1, 100))


def test_an_error_is_raised_where_its_answer_is_read_and_the_rest_dropped() -> None:
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 2:
            raise ValueError("row 2 is bad")
        return item

    got = []
    with pytest.raises(ValueError, match="row 2 is bad"), concurrently(1, work) as runs:
        for key, _ in runs.ordered((i, i) for i in range(50)):
            got.append(key)
    assert got == [0, 1]
    assert max(started) <= 3  # what had not started when the error was read never runs
