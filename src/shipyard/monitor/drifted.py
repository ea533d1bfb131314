"""The drifted features of a drift report, worst first: the line `monitor status` and the dashboard show.

Both read the report as the server sends it: `drifted` names the features past a threshold, highest
PSI first, and `features` carries each one's scores. Light on purpose (no numpy): the CLI imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN = 5


def ranked(report: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(name, PSI) of every drifted feature, highest PSI first."""
    psi = {f["name"]: float(f["psi"]) for f in report.get("features", [])}
    return sorted(((name, psi.get(name, 0.0)) for name in report.get("drifted", [])), key=lambda f: -f[1])


def worst(report: Mapping[str, Any], shown: int = SHOWN) -> str:
    """'x[36] 1.24, x[44] 0.87, +3 more': the `shown` drifted features with the highest PSI, each with
    its PSI, and how many more drifted; '' when none did."""
    features = ranked(report)
    line = ", ".join(f"{name} {psi:.2f}" for name, psi in features[:shown])
    more = len(features) - shown
    return line + (f", +{more} more" if more > 0 else "")


def verdict(report: Mapping[str, Any]) -> str:
    """Why a flagged report is flagged, in one line: its worst features by PSI, else its first reason
    (the predicted classes or the confidence moved while every feature stayed)."""
    features = worst(report)
    if features:
        return f"by PSI: {features}"
    reasons = report.get("reasons") or []
    return str(reasons[0]) if reasons else ""
