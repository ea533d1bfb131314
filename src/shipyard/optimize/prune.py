"""prune: magnitude pruning to a target sparsity.

Without the PyTorch source, each weight matrix or kernel in the ONNX file (Gemm, MatMul and Conv
weights) loses its smallest-magnitude values until the target fraction is zero. With the source
(`--torch-model`, TorchScript) and `--train`, the same masks are applied in PyTorch and the model is
fine-tuned briefly with them held, which usually wins back most of the lost accuracy.

Zeros are stored densely in ONNX, so the file keeps its size; the report shows the sparsity that
a sparse runtime or a compressed download can use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from onnx import numpy_helper

from shipyard.errors import InvalidInput
from shipyard.optimize import graph
from shipyard.optimize.measure import Progress
from shipyard.optimize.methods import Candidate, Options, Source, finish, load_model

STAGE = "pruning"


def run(source: Source, options: Options, progress: Progress) -> Candidate:
    check_sparsity(options.sparsity)
    if options.torch_model is not None or options.train is not None:
        if options.torch_model is None or options.train is None:
            raise InvalidInput(
                "fine-tuning a pruned model needs both --torch-model (its TorchScript source) and --train"
            )
        from shipyard.optimize.finetune import prune_and_finetune

        return prune_and_finetune(source, options, progress)
    model = load_model(source)
    names = set(graph.weight_names(model))
    if not names:
        raise InvalidInput(f"{source.ref} has no Gemm, MatMul or Conv weights to prune")
    for i, init in enumerate(model.graph.initializer):
        if init.name in names:
            pruned = magnitude_prune(numpy_helper.to_array(init), options.sparsity)
            init.CopyFrom(numpy_helper.from_array(pruned, init.name))
        progress(STAGE, i + 1, len(model.graph.initializer))
    return finish(model, source, {"sparsity": options.sparsity, "fine_tuned": False})


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity <= 1.0:
        raise InvalidInput(f"--sparsity must be between 0 and 1, got {sparsity}")


def magnitude_prune(weights: npt.NDArray[Any], sparsity: float) -> npt.NDArray[Any]:
    """A copy with the round(sparsity * size) smallest-magnitude values set to zero."""
    pruned: npt.NDArray[Any] = weights * magnitude_mask(weights, sparsity)
    return pruned


def magnitude_mask(weights: npt.NDArray[Any], sparsity: float) -> npt.NDArray[Any]:
    """1 where a value survives, 0 where it is pruned; ties broken by position, so exactly k go."""
    k = round(sparsity * weights.size)
    mask = np.ones(weights.size, dtype=weights.dtype)
    if k > 0:
        smallest = np.argpartition(np.abs(weights).ravel(), k - 1)[:k]
        mask[smallest] = 0
    return mask.reshape(weights.shape)
