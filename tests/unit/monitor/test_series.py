"""The dashboard's time series: answers counted a flush at a time land in the second they were
answered, not the second they were counted."""

from __future__ import annotations

import numpy as np

from shipyard.monitor.series import Series


def test_answers_noted_late_count_in_the_second_they_were_answered() -> None:
    now = [12.5]
    series = Series(bucket_s=1.0, keep=3, clock=lambda: now[0])
    series.add(5.0, ok=False)  # an error now, second 12
    series.add_all(np.array([0.001, 0.002, 0.5]), np.array([10.2, 10.7, 11.3]))  # noted at 12.5
    table = series.table()
    assert table["t"] == [10.0, 11.0, 12.0]
    assert table["rps"][:2] == [2.0, 1.0]
    assert table["error_pct"] == [0.0, 0.0, 100.0]
    series.add_all(np.array([0.001]), np.array([9.9]))  # older than every second kept: the oldest
    now[0] = 13.2
    series.add_all(np.array([0.003]), np.array([13.1]))  # a fourth second: the oldest goes
    table = series.table()
    assert table["t"] == [11.0, 12.0, 13.0]
    assert series.recent(10.0)[0] == 1 + 1 + 1  # second 11, the error, second 13
