"""Evidence for the online gates: what each serving process's monitor has seen of the versions under
rollout, written to the registry once a second as counts that only grow (VersionMonitor.evidence), so
that the controller, in whichever process holds the lease, judges the traffic of every worker and
every server together (`summed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shipyard.monitor.live import Monitor
from shipyard.registry import Registry, RolloutRecord
from shipyard.rollout.gates import Figures


class Reporter:
    def __init__(self, monitor: Monitor, name: str) -> None:
        """`name`: this process's, unique among those sharing the registry."""
        self.monitor, self.name = monitor, name

    def report(self, registry: Registry, rollouts: Iterable[RolloutRecord]) -> None:
        """This process's figures of both versions of every rollout (of the models it has watched)."""
        for rollout in rollouts:
            wanted = (rollout.baseline, rollout.candidate)
            figures = {m.record.number: m.evidence() for m in self.monitor.known(rollout.model)}
            mine = {number: doc for number, doc in figures.items() if number in wanted}
            if mine:
                registry.report_evidence(self.name, rollout.model, mine)


def summed(reports: Iterable[dict[str, Any]]) -> Figures:
    """Every process's report of one version, added up."""
    total = Figures()
    for doc in reports:
        total = total + Figures.from_dict(doc)
    return total
