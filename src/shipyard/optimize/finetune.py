"""prune with fine-tuning: masks from weight magnitudes in the PyTorch source, then a short training
run with the masks held, then export to ONNX. The source must compute what the version computes,
which is checked first: a pruned copy of some other model would be measured against the wrong parent."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.datasets import load_data
from shipyard.errors import InvalidInput
from shipyard.optimize.measure import Progress, load_runner, predict
from shipyard.optimize.methods import CHECK_ROWS, Candidate, Options, Source, finish
from shipyard.optimize.metrics import get_metric, targets_for
from shipyard.optimize.prune import magnitude_mask
from shipyard.optimize.training import (
    class_loss,
    export,
    fit,
    load_torchscript,
    mse_loss,
    require_torch,
    single_io,
)

STAGE = "fine-tuning"
EPOCHS = 5
LEARNING_RATE = 3e-3
SAME_TOLERANCE = 1e-3


def _prune(module: Any, sparsity: float) -> list[tuple[Any, Any]]:
    """Zero the smallest weights of every matrix and kernel of `module`; (parameter, mask) of each."""
    import torch

    masks = []
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim >= 2:
                mask = torch.from_numpy(magnitude_mask(param.detach().numpy(), sparsity))
                param.mul_(mask)
                masks.append((param, mask))
    return masks


def prune_and_finetune(source: Source, options: Options, progress: Progress) -> Candidate:
    require_torch("prune's fine-tune")
    import onnx
    import torch

    assert options.torch_model is not None and options.train is not None
    input_name, output_name = single_io(source, "prune's fine-tune")
    module = load_torchscript(options.torch_model)
    _require_same(module, source, input_name, output_name)
    train = load_data(options.train, source.signature, label_column=options.label_column)
    assert train.y is not None
    scores = source.signature.scores
    if scores is not None:
        targets = targets_for(get_metric("accuracy"), train.y, source.labels, train.classes)
        loss = class_loss(scores.kind == "probabilities")
    else:
        targets = train.y.astype(np.float32)
        loss = mse_loss

    masks = _prune(module, options.sparsity)
    if not masks:
        raise InvalidInput(f"{options.torch_model.name} has no weight matrices or kernels to prune")

    def reapply() -> None:
        with torch.no_grad():
            for param, mask in masks:
                param.mul_(mask)

    epochs = options.epochs or EPOCHS
    fit(
        module,
        module,
        train.inputs[input_name],
        targets,
        loss,
        epochs=epochs,
        learning_rate=options.learning_rate or LEARNING_RATE,
        batch_size=options.batch_size,
        seed=options.seed,
        progress=progress,
        stage=STAGE,
        after_step=reapply,
    )
    converted = export(module, source, input_name, output_name)
    used: dict[str, Any] = {
        "sparsity": options.sparsity,
        "fine_tuned": True,
        "torch_model": options.torch_model.name,
        "train": train.info.name,
        "train_rows": train.rows,
        "epochs": epochs,
        "learning_rate": options.learning_rate or LEARNING_RATE,
    }
    model = onnx.load_model_from_string(converted.onnx_bytes)
    return finish(model, source, used, framework="pytorch", check=converted.check.to_dict())


def _require_same(module: Any, source: Source, input_name: str, output_name: str) -> None:
    import torch

    from shipyard.optimize.measure import Timing

    head = source.data.select(slice(0, CHECK_ROWS))
    runner = load_runner(source.ref, source.onnx_bytes, Timing(threads=1))
    try:
        expected = predict(runner, head, output_name)
    finally:
        runner.unload()
    with torch.no_grad():
        module.eval()
        out = module(torch.from_numpy(np.ascontiguousarray(head.inputs[input_name])))
    got = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
    if got.shape != expected.shape or not np.allclose(
        got, expected, rtol=SAME_TOLERANCE, atol=SAME_TOLERANCE
    ):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise InvalidInput(
            f"--torch-model does not compute what {source.ref} computes "
            f"(outputs differ by {worst:.3g} on the evaluation data)"
        )
