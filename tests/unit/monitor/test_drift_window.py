"""The sliding window alone: a ring buffer that forgets by count and by age, on a clock the test moves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.errors import InvalidInput
from shipyard.monitor.window import UNSCORED, SlidingWindow


class Clock:
    """A monotonic clock the test sets by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows(start: int, count: int, width: int = 2) -> np.ndarray:
    """Rows whose first value is their number in the stream, so the window's contents are easy to read."""
    out = np.zeros((count, width))
    out[:, 0] = np.arange(start, start + count)
    return out


def test_the_oldest_rows_make_room_for_new_ones() -> None:
    window = SlidingWindow(2, capacity=5)
    window.observe(rows(0, 3))
    assert window.snapshot().features[:, 0].tolist() == [0, 1, 2]
    window.observe(rows(3, 4))
    assert window.snapshot().features[:, 0].tolist() == [2, 3, 4, 5, 6]
    window.observe(rows(7, 12))  # a batch larger than the window keeps its newest rows
    assert window.snapshot().features[:, 0].tolist() == [14, 15, 16, 17, 18]


@given(st.lists(st.integers(min_value=0, max_value=12), max_size=30), st.integers(min_value=1, max_value=9))
def test_the_window_always_holds_the_last_capacity_rows_in_order(batches: list[int], capacity: int) -> None:
    window = SlidingWindow(2, capacity=capacity, scores=True)
    seen = 0
    for size in batches:
        batch = rows(seen, size)
        window.observe(batch, batch[:, 0].astype(np.int64), batch[:, 0] / 100)
        seen += size
    expected = list(range(max(0, seen - capacity), seen))
    snap = window.snapshot()
    assert snap.rows == len(expected)
    assert snap.features[:, 0].tolist() == expected
    assert snap.classes is not None and snap.classes.tolist() == expected
    assert snap.confidence is not None
    np.testing.assert_allclose(snap.confidence, np.array(expected) / 100)


def test_rows_older_than_max_age_leave_when_the_window_is_read() -> None:
    clock = Clock()
    window = SlidingWindow(2, capacity=100, max_age_s=10.0, clock=clock)
    window.observe(rows(0, 3))  # t = 0
    clock.now = 6.0
    window.observe(rows(3, 2))  # t = 6
    clock.now = 10.0
    assert window.snapshot().rows == 5  # the first rows are exactly 10 s old: still in
    clock.now = 12.0
    assert window.snapshot().features[:, 0].tolist() == [3, 4]
    assert window.snapshot(now=16.5).rows == 0
    window.observe(rows(5, 1))  # t = 12 (the clock), after everything expired
    assert window.snapshot().features[:, 0].tolist() == [5]


def test_a_clock_that_steps_back_cannot_unsort_the_window() -> None:
    window = SlidingWindow(1, capacity=10, max_age_s=5.0)
    window.observe(rows(0, 1, width=1), now=100.0)
    window.observe(rows(1, 1, width=1), now=90.0)  # counted as seen at 100, not 90
    assert window.snapshot(now=104.0).rows == 2
    assert window.snapshot(now=106.0).rows == 0


def test_clear_empties_the_window() -> None:
    window = SlidingWindow(2, capacity=4)
    window.observe(rows(0, 3))
    window.clear()
    assert window.snapshot().rows == 0
    window.observe(rows(3, 1))
    assert window.snapshot().features[:, 0].tolist() == [3]


def test_rows_without_scores_keep_their_features_and_are_marked_unscored() -> None:
    window = SlidingWindow(2, capacity=4, scores=True)
    window.observe(rows(0, 2), np.array([3, 4]), np.array([0.9, 0.8]))
    window.observe(rows(2, 1))
    snapshot = window.snapshot()
    assert snapshot.features[:, 0].tolist() == [0, 1, 2]
    assert snapshot.classes is not None and snapshot.classes.tolist() == [3, 4, UNSCORED]
    assert snapshot.confidence is not None and np.isnan(snapshot.confidence[2])


def test_batches_that_do_not_fit_the_window_are_refused() -> None:
    window = SlidingWindow(3, capacity=4, scores=True)
    with pytest.raises(InvalidInput, match="3 features"):
        window.observe(np.zeros((2, 4)), np.zeros(2, np.int64), np.zeros(2))
    with pytest.raises(InvalidInput, match="pass classes and confidence together"):
        window.observe(np.zeros((2, 3)), np.zeros(2, np.int64))
    with pytest.raises(InvalidInput, match="2 feature rows but 1 classes"):
        window.observe(np.zeros((2, 3)), np.zeros(1, np.int64), np.zeros(2))
    with pytest.raises(InvalidInput, match="max_age_s"):
        SlidingWindow(3, max_age_s=0)
