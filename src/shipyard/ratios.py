"""How a ratio of two measurements is said to people, the same in every report: 2.00x faster, 1.33x
slower (never 0.75x faster)."""

from __future__ import annotations

import math


def times(ratio: float, better: str, worse: str, same: str) -> str:
    """A ratio as people say it: 2.00x faster, 1.33x slower (never 0.75x faster); `same` when it
    rounds to 1.00 either way."""
    if not ratio > 0 or not math.isfinite(ratio):
        return ""
    if f"{ratio:.2f}" == "1.00" or f"{1 / ratio:.2f}" == "1.00":
        return same
    return f"{ratio:.2f}x {better}" if ratio > 1 else f"{1 / ratio:.2f}x {worse}"
