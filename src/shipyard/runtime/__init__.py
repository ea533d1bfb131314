"""Running models: ONNX Runtime sessions (runners) and the manager that loads and serves versions.

The names below load on first use, so that the pure parts (`runtime.batcher`, `runtime.tensors`)
import without ONNX Runtime or the database layer behind the manager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.runtime.loading import LoadedVersion
    from shipyard.runtime.manager import ModelManager
    from shipyard.runtime.session import Runner, RunnerOptions

_LAZY = {
    "LoadedVersion": "shipyard.runtime.loading",
    "ModelManager": "shipyard.runtime.manager",
    "Runner": "shipyard.runtime.session",
    "RunnerOptions": "shipyard.runtime.session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LoadedVersion", "ModelManager", "Runner", "RunnerOptions"]
