"""A rollout's plan: the steps a candidate takes to production, written as one line.

    canary:5%:10m,25%:10m,pause,100%

    shadow:DURATION      the candidate gets a copy of the requests and answers no one, for DURATION:
                         judged on agreeing with production (rollout/shadow.py), its latency, errors
    P%:DURATION          the candidate gets P% of the requests that name no version for DURATION,
                         judged by the online gates all along (`canary:` in front is optional)
    ab:P%:DURATION       an A/B experiment: the same split held for the whole DURATION, guarded by
                         the gates, then a verdict per variant, and a pause for a person to decide
    pause                waits for `shipyard rollout resume` (or promote, or abort): a manual gate
    100%                 promotion: the production alias moves to the candidate, the rollout is done

A plan that does not end in 100% waits, paused, after its last step for someone to promote. Durations
are NUMBER followed by s, m or h.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.errors import InvalidInput

MAX_STEPS = 32
DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h)")
UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Step:
    kind: str
    """"shadow" (copies for a time), "split" (a share for a time), "ab" (a split held for a verdict),
    "pause" (until resumed), "promote"."""
    percent: float = 0.0
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind == "split":
            return f"{self.percent:g}% for {_duration(self.seconds)}"
        if self.kind == "shadow":
            return f"shadow for {_duration(self.seconds)}"
        if self.kind == "ab":
            return f"A/B {self.percent:g}% for {_duration(self.seconds)}"
        return "pause" if self.kind == "pause" else "100%"


@dataclass(frozen=True)
class Plan:
    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> Plan:
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or not all(parts):
            raise InvalidInput(f"bad plan {text!r}: steps are separated by commas, e.g. 5%:10m,25%:10m,100%")
        if len(parts) > MAX_STEPS:
            raise InvalidInput(f"a plan has at most {MAX_STEPS} steps, not {len(parts)}")
        steps = tuple(_step(part) for part in parts)
        if any(step.kind == "promote" for step in steps[:-1]):
            raise InvalidInput(f"bad plan {text!r}: 100% promotes, so it can only be the last step")
        return cls(",".join(parts), steps)

    def __str__(self) -> str:
        return ", ".join(str(step) for step in self.steps)


def _step(text: str) -> Step:
    words = text.lower().split(":")
    kind = "ab" if words[0] == "ab" else "split"
    if words[0] in ("canary", "ab"):
        words = words[1:]
    if words == ["pause"]:
        return Step("pause")
    if words[0] == "shadow":
        if len(words) != 2:
            raise InvalidInput(f"bad step {text!r}: a shadow step needs a duration, as in shadow:10m")
        return Step("shadow", 0, _seconds(text, words[1]))
    if not words or not words[0].endswith("%"):
        raise InvalidInput(
            f"bad step {text!r}: expected shadow:DURATION, P%:DURATION, ab:P%:DURATION, pause or 100%"
        )
    try:
        percent = float(words[0][:-1])
    except ValueError:
        raise InvalidInput(f"bad step {text!r}: {words[0]!r} is not a percentage") from None
    if not 0 < percent <= 100:
        raise InvalidInput(f"bad step {text!r}: the share must be more than 0% and at most 100%")
    if percent == 100 and len(words) == 1 and kind == "split":
        return Step("promote")
    if len(words) != 2 or percent == 100:
        raise InvalidInput(f"bad step {text!r}: a share below 100% needs a duration, as in 5%:10m")
    return Step(kind, percent, _seconds(text, words[1]))


def _seconds(step: str, text: str) -> float:
    found = DURATION.fullmatch(text)
    if found is None or float(found[1]) <= 0:
        raise InvalidInput(f"bad step {step!r}: {text!r} is not a duration such as 30s, 10m or 1h")
    return float(found[1]) * UNIT_S[found[2]]


def _duration(seconds: float) -> str:
    for unit in ("h", "m"):
        if seconds >= UNIT_S[unit] and seconds % UNIT_S[unit] == 0:
            return f"{seconds / UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"
