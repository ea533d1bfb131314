"""What the methods that train in PyTorch share (distill, and prune's fine-tune): the optional
torch import, the training loop, the losses, and the export back to ONNX with its numerical check.

torch is an optional extra: nothing here imports it at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shipyard.errors import InvalidInput
from shipyard.optimize.measure import Progress, score_output
from shipyard.optimize.methods import CHECK_ROWS, Source

if TYPE_CHECKING:
    import torch

    from shipyard.convert.check import Converted

Array = npt.NDArray[Any]
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def require_torch(method: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InvalidInput(
            f"{method} trains in PyTorch, which is not installed: pip install 'shipyard[torch]'"
        ) from None


def single_io(source: Source, method: str) -> tuple[str, str]:
    """The input and output names of a one-input, one-output model (what training here supports)."""
    sig = source.signature
    if len(sig.inputs) != 1 or len(sig.outputs) != 1:
        raise InvalidInput(
            f"{method} trains models with one input and one output; {source.ref} has "
            f"{len(sig.inputs)} inputs and {len(sig.outputs)} outputs"
        )
    return sig.inputs[0].name, score_output(sig)


def load_torchscript(path: Path) -> torch.nn.Module:
    import warnings

    import torch

    if not path.is_file():
        raise InvalidInput(f"no such TorchScript file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module: torch.nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises RuntimeError, ValueError or zipfile errors
        raise InvalidInput(f"{path} is not a TorchScript file ({type(exc).__name__})") from exc
    return module


def fit(
    module: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: Array,
    targets: Array,
    loss: Loss,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    progress: Progress,
    stage: str,
    after_step: Callable[[], None] | None = None,
) -> None:
    """Adam over shuffled mini-batches; `after_step` runs after every update (e.g. to re-apply masks)."""
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    xs, ts = torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(targets))
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss(forward(xs[index]), ts[index]).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if after_step is not None:
                after_step()
        progress(stage, epoch + 1, epochs)
    module.eval()


def distillation_loss(temperature: float) -> Loss:
    """KL divergence between the teacher's and student's softened class distributions (Hinton et al.)."""
    import torch.nn.functional as F

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        soft = F.softmax(teacher / temperature, dim=-1)
        return F.kl_div(F.log_softmax(student / temperature, dim=-1), soft, reduction="batchmean") * (
            temperature**2
        )

    return loss


def mse_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.mse_loss(outputs.reshape(targets.shape), targets)


def class_loss(probabilities: bool) -> Loss:
    """Cross-entropy on labels, for a model that outputs logits or (when `probabilities`) probabilities."""
    import torch
    import torch.nn.functional as F

    def loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if probabilities:
            return F.nll_loss(torch.log(outputs.clamp_min(1e-7)), labels)
        return F.cross_entropy(outputs, labels)

    return loss


def export(module: torch.nn.Module, source: Source, input_name: str, output_name: str) -> Converted:
    """Export to ONNX with the parent's input and output names, checked on the evaluation data."""
    import torch

    from shipyard.convert.torch import from_module

    sample = source.data.inputs[input_name][:CHECK_ROWS]
    example = torch.from_numpy(np.ascontiguousarray(sample[:1]))
    return from_module(module, example, sample=sample, input_name=input_name, output_name=output_name)
