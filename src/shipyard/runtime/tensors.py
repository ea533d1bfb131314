"""Merging requests along the batch axis and splitting results back: pure numpy, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shipyard.errors import ShipyardError


def batch_key(inputs: dict[str, np.ndarray], outputs: Sequence[str] | None) -> tuple[object, ...]:
    """Requests may share a run only when everything but their batch axis matches."""
    return (
        tuple(outputs) if outputs else None,
        tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items())),
    )


def rows(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


def merge(requests: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(requests) == 1:
        return requests[0]
    return {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}


def split(outputs: Sequence[np.ndarray], sizes: Sequence[int]) -> list[list[np.ndarray]]:
    """Per request, its rows of every output; a model that changes the row count breaks the contract."""
    if len(sizes) == 1:
        return [list(outputs)]
    total = sum(sizes)
    for out in outputs:
        if out.ndim == 0 or out.shape[0] != total:
            raise ShipyardError(
                f"the model returned {out.shape[0] if out.ndim else 0} rows for a batch of {total}: "
                "with batching on, output rows must equal input rows (turn batching off for this model)"
            )
    parts, start = [], 0
    for size in sizes:  # plain slices: views, at a fraction of np.split's cost for many small requests
        end = start + size
        parts.append([out[start:end] for out in outputs])
        start = end
    return parts
