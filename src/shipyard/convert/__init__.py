"""Turn models from frameworks into ONNX, each conversion followed by a numerical check.

Every converter returns a `Converted`: the ONNX bytes, the signature read from the graph, and the
`CheckResult` proving the ONNX model gives the source's numbers. torch and scikit-learn are imported
only when their converter is called, so importing this package stays light.
"""

from shipyard.convert.check import (
    CheckResult,
    Converted,
    compare,
    detect_scores,
    require_close,
    run_onnx,
    sample_inputs,
    signature_of,
)
from shipyard.convert.onnx_file import from_onnx
from shipyard.convert.sklearn import from_estimator
from shipyard.convert.sklearn import from_file as from_sklearn_file
from shipyard.convert.torch import from_module, from_torchscript

__all__ = [
    "CheckResult",
    "Converted",
    "compare",
    "detect_scores",
    "from_estimator",
    "from_module",
    "from_onnx",
    "from_sklearn_file",
    "from_torchscript",
    "require_close",
    "run_onnx",
    "sample_inputs",
    "signature_of",
]
