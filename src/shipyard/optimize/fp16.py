"""fp16: weights and computation in float16, inputs and outputs kept float32 so requests and
clients do not change. Uses the float16 converter that ships with onnxruntime."""

from __future__ import annotations

import warnings

from shipyard.optimize.measure import Progress
from shipyard.optimize.methods import Candidate, Options, Source, finish, load_model

STAGE = "converting to float16"


def run(source: Source, options: Options, progress: Progress) -> Candidate:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    progress(STAGE, 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about values clipped to float16's range
        model = convert_float_to_float16(load_model(source), keep_io_types=True)
    progress(STAGE, 1, 1)
    return finish(model, source, {"keep_io_types": True})
