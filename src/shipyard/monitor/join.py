"""Joining feedback to the predictions it labels, all or nothing.

Each prediction id is looked up in memory (the latest predictions), then in the prediction log's
files (newest first, bounded: logread.find_predictions), so a join may block: run it in a worker
thread. An id unknown, or answered by another model, is a 404; a label the answering version cannot
have is a 400; either way nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitor.feedback import Label, read_label
from shipyard.monitor.logread import find_predictions
from shipyard.monitor.recent import RecentPrediction, RecentPredictions
from shipyard.monitor.version import VersionMonitor


class FeedbackJoin:
    def __init__(self, recent: RecentPredictions, log_root: Path | None) -> None:
        """`log_root`: the prediction log's folder of Parquet files; None when there is none to read."""
        self.recent = recent
        self.log_root = log_root

    def join(
        self,
        model: str,
        items: Iterable[tuple[str, Label]],
        monitor_of: Callable[[int], VersionMonitor | None],
    ) -> dict[str, Any]:
        """Label the predictions of `model` by prediction id; `monitor_of` gives the monitor of the
        version that answered (None: one this server does not serve, a 404)."""
        items = list(items)
        found = self._find(model, [request_id for request_id, _ in items])
        unknown = [request_id for request_id in dict.fromkeys(i for i, _ in items) if request_id not in found]
        if unknown:
            raise NotFound(f"no prediction of {model!r} has the id {_shorten(unknown)}: nothing was recorded")
        judged = []
        for i, (request_id, label) in enumerate(items):
            prediction = found[request_id]
            monitor = monitor_of(prediction.version)
            if monitor is None:
                raise NotFound(
                    f"prediction {request_id!r} was answered by {model}:{prediction.version}, which this "
                    "server does not serve: nothing was recorded"
                )
            try:
                truth = read_label(label, monitor.classes)
            except InvalidInput as exc:
                where = f"feedback item {i}" if len(items) > 1 else "feedback"
                raise InvalidInput(f"{where}: {exc.message}; nothing was recorded") from None
            judged.append((monitor, request_id, truth, prediction.class_))
        for monitor, request_id, truth, predicted in judged:
            monitor.label(request_id, truth, predicted)
        return {"accepted": len(judged)}

    def _find(self, model: str, ids: list[str]) -> dict[str, RecentPrediction]:
        """The predictions of `model` with these ids: from memory, then from the log's files."""
        found: dict[str, RecentPrediction] = {}
        missing = []
        for request_id in ids:
            hit = self.recent.lookup(request_id)
            if hit is not None and hit.model == model:
                found[request_id] = hit
            else:
                missing.append(request_id)
        if missing and self.log_root is not None:
            found.update(find_predictions(self.log_root, model, missing))
        return found


def _shorten(ids: list[str], shown: int = 5) -> str:
    """A few of the ids, each cut short: enough to find them, never a wall of text sent back."""
    more = f" ... ({len(ids)} in all)" if len(ids) > shown else ""
    return ", ".join(repr(i[:64]) for i in ids[:shown]) + more
