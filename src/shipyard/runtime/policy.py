"""Which versions of a model a server keeps loaded: a version policy, as TF Serving and Triton have.

    all                every registered version
    latest N           the N newest
    specific 1,3       exactly these

The default version (the production alias, else the newest) is always loaded whatever the policy,
so the model never stops answering. (The accepted spellings are checked by ModelServing.versions.)
"""

from __future__ import annotations

from collections.abc import Iterable


def wanted_versions(policy: str, available: Iterable[int], default: int | None) -> set[int]:
    numbers = sorted(available)
    kind, _, arg = policy.partition(" ")
    if kind == "latest":
        chosen = set(numbers[-int(arg) :])
    elif kind == "specific":
        chosen = {int(v) for v in arg.split(",")} & set(numbers)
    else:
        chosen = set(numbers)
    if default is not None:
        chosen.add(default)
    return chosen
