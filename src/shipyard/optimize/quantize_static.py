"""static-int8: ONNX Runtime's static quantization in QDQ form, weights per channel where the op
allows it. Activation ranges are calibrated on real inputs: `--calibration FILE`, else a sample of
the evaluation data (which then measures a model tuned on part of it; a separate file avoids that)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx

from shipyard.datasets import load_data
from shipyard.optimize.measure import Progress
from shipyard.optimize.methods import Candidate, Options, Source, finish, load_model
from shipyard.optimize.quantize_dynamic import quiet_quantizer

STAGE = "calibrating"
CALIBRATION_BATCH = 32


def run(source: Source, options: Options, progress: Progress) -> Candidate:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if options.calibration is not None:
        data = load_data(options.calibration, source.signature, need_labels=False)
        origin = data.info.name
    else:
        data = source.data
        origin = f"{data.info.name} (sample of the evaluation data)"
    data = data.sample(options.calibration_rows, seed=options.seed)
    batches = data.batches(CALIBRATION_BATCH)

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        def __init__(self) -> None:
            self._next = iter(enumerate(batches))

        def get_next(self) -> dict[str, Any] | None:
            i, batch = next(self._next, (len(batches), None))
            progress(STAGE, i, len(batches))
            return batch

    with tempfile.TemporaryDirectory(prefix="shipyard-quant-") as tmp, quiet_quantizer():
        out = Path(tmp) / "candidate.onnx"
        quantize_static(
            load_model(source),
            out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=options.reduce_range,
        )
        quantized = onnx.load(str(out))
    used = {
        "calibration": origin,
        "calibration_rows": data.rows,
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
    }
    return finish(quantized, source, used)
