"""shipyard: take a trained model to a fast, versioned, monitored production endpoint.

The public Python API; everything else is reachable through its own module but may change.
"""

from typing import TYPE_CHECKING, Any

from shipyard._version import __version__
from shipyard.config import Settings
from shipyard.errors import (
    Conflict,
    ConversionFailed,
    CorruptArtifact,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ShipyardError,
    Unavailable,
)
from shipyard.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from shipyard.importing import import_boosting, import_keras, import_onnx, import_sklearn, import_torch
    from shipyard.registry import Registry, VersionRecord

# Loaded on first use, so that importing the core (shipyard.protocol, ...) pulls in no database layer.
_LAZY = {
    "import_boosting": "shipyard.importing",
    "import_keras": "shipyard.importing",
    "import_onnx": "shipyard.importing",
    "import_sklearn": "shipyard.importing",
    "import_torch": "shipyard.importing",
    "Registry": "shipyard.registry",
    "VersionRecord": "shipyard.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


__all__ = [
    "Conflict",
    "ConversionFailed",
    "CorruptArtifact",
    "InvalidInput",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Registry",
    "Settings",
    "ShipyardError",
    "Signature",
    "TensorSpec",
    "Unavailable",
    "VersionRecord",
    "__version__",
    "import_boosting",
    "import_keras",
    "import_onnx",
    "import_sklearn",
    "import_torch",
]
