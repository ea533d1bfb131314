"""The gauges the monitor's tick sets once a second, on the event loop: each version's residency,
memory, queue and requests in flight (as the runtime reports them), live accuracy and cost, drift
scores, and the prediction log's counters. A version gone since the last tick loses its series, so no
gauge reports a version that left."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from shipyard.monitor.drift import DriftReport
from shipyard.monitor.metrics import Metrics
from shipyard.monitor.predlog import PredictionLogCounters
from shipyard.monitor.version import VersionMonitor

State = tuple[bool, int, int, int]
"""A version's (resident, memory bytes, queued, in flight), as the runtime reports it."""
LOG_OUTCOMES = ("written", "dropped_full", "sampled_out", "rate_limited")


class Gauges:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._ticked: set[tuple[str, int]] = set()
        self._logged: dict[str, int] = {}

    def states(self, states: Mapping[tuple[str, int], State]) -> None:
        """Every version served, by (model, version); the series of those gone are removed."""
        m = self.metrics
        for key in self._ticked - set(states):
            for gauge in (m.loaded, m.memory, m.queue_depth, m.in_flight):
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))
        self._ticked = set(states)
        for (model, number), (resident, memory, queued, in_flight) in states.items():
            labels = (model, str(number))
            m.loaded.labels(*labels).set(1 if resident else 0)
            m.memory.labels(*labels).set(memory)
            m.queue_depth.labels(*labels).set(queued)
            m.in_flight.labels(*labels).set(in_flight)

    def quality(self, versions: Mapping[tuple[str, int], VersionMonitor]) -> None:
        """Live accuracy, the labelled predictions behind it, and cost, of every version watched."""
        m = self.metrics
        for (model, number), monitor in versions.items():
            labels = (model, str(number))
            accuracy, cost = monitor.feedback.figures(), monitor.cost_per_1k()
            if accuracy.value is not None:
                m.accuracy.labels(*labels).set(accuracy.value)
            if accuracy.labelled:
                m.feedback_labelled.labels(*labels, "correct").set(accuracy.correct)
                m.feedback_labelled.labels(*labels, "wrong").set(accuracy.wrong)
            if cost is not None:
                m.cost.labels(*labels).set(cost)

    def drift(self, reports: Mapping[tuple[str, int], DriftReport]) -> None:
        m = self.metrics
        for (model, number), report in reports.items():
            labels = (model, str(number))
            m.drifting.labels(*labels).set(1 if report.flagged else 0)
            for feature in report.features:
                m.drift.labels(*labels, feature.name, "psi").set(feature.psi)
                m.drift.labels(*labels, feature.name, "ks").set(feature.ks)

    def log(self, counters: PredictionLogCounters) -> None:
        """The prediction log's counters, as counters: what they grew by since the last tick."""
        for outcome in LOG_OUTCOMES:
            now = getattr(counters, outcome)
            self.metrics.log_records.labels(outcome).inc(now - self._logged.get(outcome, 0))
            self._logged[outcome] = now
