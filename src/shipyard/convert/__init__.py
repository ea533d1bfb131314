"""Turn models from frameworks into ONNX, each conversion followed by a numerical check.

Every converter returns a `Converted`: the ONNX bytes, the signature read from the graph, and the
`CheckResult` proving the ONNX model gives the source's numbers. torch, scikit-learn, TensorFlow and
the gradient-boosting libraries are imported only when their converter is called, so importing this
package stays light.
"""

from shipyard.convert.boosting import from_file as from_boosting_file
from shipyard.convert.boosting import from_model as from_boosting
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
from shipyard.convert.keras import from_file as from_keras_file
from shipyard.convert.keras import from_model as from_keras
from shipyard.convert.onnx_file import from_onnx
from shipyard.convert.sklearn import from_estimator
from shipyard.convert.sklearn import from_file as from_sklearn_file
from shipyard.convert.torch import from_module, from_torchscript

__all__ = [
    "CheckResult",
    "Converted",
    "compare",
    "detect_scores",
    "from_boosting",
    "from_boosting_file",
    "from_estimator",
    "from_keras",
    "from_keras_file",
    "from_module",
    "from_onnx",
    "from_sklearn_file",
    "from_torchscript",
    "require_close",
    "run_onnx",
    "sample_inputs",
    "signature_of",
]
