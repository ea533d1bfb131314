"""dynamic-int8: ONNX Runtime's dynamic quantization. Weights are stored as int8; activations are
quantized on the fly at each run, so no calibration data is needed."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from shipyard.optimize.measure import Progress
from shipyard.optimize.methods import Candidate, Options, Source, finish, load_model

STAGE = "quantizing"


def run(source: Source, options: Options, progress: Progress) -> Candidate:
    progress(STAGE, 0, 1)
    quantized, used = int8(load_model(source), options.reduce_range)
    progress(STAGE, 1, 1)
    return finish(quantized, source, used)


def int8(model: onnx.ModelProto, reduce_range: bool = True) -> tuple[onnx.ModelProto, dict[str, object]]:
    """`model` with int8 weights, and the options used (for the lineage, or an export's manifest)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX Runtime's CPU ConvInteger is fast only with uint8 weights (int8 ones ran ~3x slower here);
    # MatMulInteger prefers int8 weights. A model with convolutions gets uint8 throughout.
    has_conv = any(node.op_type == "Conv" for node in model.graph.node)
    weight_type = QuantType.QUInt8 if has_conv else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="shipyard-quant-") as tmp, quiet_quantizer():
        out = Path(tmp) / "candidate.onnx"
        # uint8 weights (convolutions) cannot saturate; int8 ones get reduce_range (see Options)
        reduce_range = reduce_range and not has_conv
        quantize_dynamic(model, out, weight_type=weight_type, reduce_range=reduce_range)
        quantized = onnx.load(str(out))
    return quantized, {"weight_type": "uint8" if has_conv else "int8", "reduce_range": reduce_range}


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice on the root logger ("consider pre-processing"); keep it off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
