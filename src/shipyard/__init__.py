"""shipyard: take a trained model to a fast, versioned, monitored production endpoint.

The public Python API; everything else is reachable through its own module but may change.
"""

__version__ = "0.1.0"

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
from shipyard.importing import import_onnx, import_sklearn, import_torch
from shipyard.registry import Registry, VersionRecord
from shipyard.signature import Signature, TensorSpec

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
    "import_onnx",
    "import_sklearn",
    "import_torch",
]
