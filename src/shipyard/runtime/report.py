"""What a server reports about the versions it serves: the state of each (the repository index and
readiness read it) and the gauges the monitor's tick sets."""

from __future__ import annotations

from collections.abc import Iterable

from shipyard.runtime.served import ServedModel


def state_of(served: ServedModel | None, number: int, failure: str | None = None) -> tuple[str, str]:
    """(READY | LOADING | UNAVAILABLE, why not ready) of one version; `failure`: why it failed to load."""
    if failure is not None:
        return "UNAVAILABLE", f"failed to load: {failure}"
    if served is None:
        return "UNAVAILABLE", "model not loaded"
    if number in served.versions:
        return "READY", ""
    if number in served.loading:
        return "LOADING", ""
    if number in served.records:
        return "UNAVAILABLE", "not resident (memory budget): loads on its next request"
    return "UNAVAILABLE", f"not in the version policy ({served.serving.versions})"


def gauges(models: Iterable[ServedModel]) -> dict[tuple[str, int], tuple[bool, int, int, int]]:
    """(model, version) -> (resident, memory bytes, queued, in flight) of every version served."""
    out = {}
    for served in models:
        for number in served.records:
            loaded = served.versions.get(number)
            out[served.name, number] = (
                (True, loaded.memory_bytes, loaded.batcher.queued, loaded.in_flight)
                if loaded is not None
                else (False, 0, 0, 0)
            )
    return out
