"""Whether a version failed a gate: an export ships only what passed (or what the user forces)."""

from __future__ import annotations

from shipyard.registry import Registry, VersionRecord


def failed(registry: Registry, record: VersionRecord) -> str | None:
    """Why `record` did not pass, or None: its optimize gate failed (it was registered by force), the
    latest offline gate (`shipyard gate`) on it failed, or its latest rollout was rolled back."""
    gate = (record.lineage or {}).get("gate") or {}
    if gate and not gate.get("passed", True):
        drop = f"{gate.get('metric')} drop {gate.get('drop', 0):.4g}, bound {gate.get('max_drop')}"
        return f"failed its optimize gate ({drop})"
    verdicts = [e for e in registry.history(record.model) if e.kind == "gate" and e.version == record.number]
    if verdicts and verdicts[-1].detail.startswith("failed"):
        return f"failed its gate: {verdicts[-1].detail}"
    rollouts = [r for r in registry.rollouts(record.model) if r.candidate == record.number]
    latest = max(rollouts, key=lambda r: r.started_at, default=None)
    if latest is not None and latest.status == "rolled-back":
        return f"was rolled back by its rollout: {latest.reason}"
    return None
