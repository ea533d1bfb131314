"""Convert a PyTorch module or TorchScript file to ONNX, and prove both give the same numbers.

torch is an optional extra, so it is imported only inside the functions here.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    Converted,
    detect_scores,
    first_line,
    require_close,
    rows_of,
    run_onnx,
    sample_inputs,
    signature_of,
    user_inputs,
)
from shipyard.errors import ConversionFailed, InvalidInput, NotFound

if TYPE_CHECKING:
    import torch

    from shipyard.signature import Signature

OPSET = 17
CHECK_BATCH = 8  # differs from any example batch of 1 or 2, so a hard-coded batch axis shows up
_EXAMPLE_DIM = 2  # stands in for -1 dims of a TorchScript input shape


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConversionFailed("PyTorch is not installed: pip install 'shipyard[torch]'") from None


def _require_every_input(signature: Signature, taken: int) -> None:
    if len(signature.inputs) != taken:
        used = ", ".join(spec.name for spec in signature.inputs) or "none"
        raise ConversionFailed(
            f"the module takes {taken} inputs but the exported graph uses {used}; "
            "the exporter drops inputs the computation ignores"
        )


def from_module(
    module: torch.nn.Module,
    example_input: torch.Tensor | Array | tuple[torch.Tensor | Array, ...],
    sample: Array | Sequence[Array] | None = None,
    tolerance: float = 1e-4,
    input_name: str = "input",
    output_name: str | None = None,
) -> Converted:
    """Export `module` with a dynamic batch axis, then compare it with the ONNX model on a sample.

    The sample is the caller's data when given, else generated with a batch of 8; a conversion
    whose outputs differ by more than `tolerance` is refused with ConversionFailed.
    """
    _require_torch()
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ConversionFailed(f"expected a torch.nn.Module, got {type(module).__name__}")
    values = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    examples = _tensors(values)
    input_names = [f"input_{i}" for i in range(len(examples))] if len(examples) > 1 else [input_name]

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            example_outputs = _run_module(module, examples, "the example input")
            output_names = _output_names(len(example_outputs), output_name)
            onnx_bytes = _export(module, examples, example_outputs, input_names, output_names)
            model = onnx.load_model_from_string(onnx_bytes)
            signature = signature_of(model)
            _require_every_input(signature, len(examples))
            if sample is not None:
                inputs, source = user_inputs(signature, sample), USER_DATA
            else:
                inputs, source = sample_inputs(signature, batch=CHECK_BATCH), GENERATED
            rows = rows_of(inputs)
            what = f"a sample of {rows} rows"
            tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values()]
            expected = dict(zip(output_names, _run_module(module, tensors, what), strict=True))
    finally:
        module.train(was_training)

    try:
        actual = dict(zip(output_names, run_onnx(onnx_bytes, inputs), strict=True))
    except ConversionFailed as exc:
        raise ConversionFailed(f"the exported model fails on {what}: {exc}") from exc
    check = require_close(expected, actual, tolerance, rows, source)
    scores = detect_scores(signature, actual)
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature_of(model, scores),
        framework="pytorch",
        check=check,
        labels=None,
    )


def from_torchscript(
    path: str | Path,
    input_shape: Sequence[int],
    sample: Array | Sequence[Array] | None = None,
    tolerance: float = 1e-4,
) -> Converted:
    """Load a TorchScript file and convert it like a module; the first axis of `input_shape` is
    the batch axis and stays dynamic, and -1 dims stand for any size. The version it makes is
    recorded as from torchscript (`--framework torchscript`), a module given in Python as pytorch."""
    _require_torch()
    import torch

    shape = [int(d) for d in input_shape]
    if not shape or any(d == 0 or d < -1 for d in shape):
        raise InvalidInput(f"input shape {shape} must list positive sizes, or -1 for any size")
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises RuntimeError, ValueError or zipfile errors
        raise ConversionFailed(_not_torchscript(path, exc)) from exc
    example_shape = [_EXAMPLE_DIM if d == -1 else d for d in shape]
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(example_shape, generator=generator)
    converted = from_module(module, example, sample=sample, tolerance=tolerance)
    return dataclasses.replace(converted, framework="torchscript")


def _not_torchscript(path: Path, exc: Exception) -> str:
    """Say what the file is instead. torch.load with weights_only=True runs no code from the file
    (it only rebuilds tensors and plain containers); it is used to tell the user, never to import."""
    import pickle
    import zipfile

    import torch

    build = "build the module in Python and call shipyard.import_torch(module, example_input, name=...)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if zipfile.is_zipfile(path):
            return (
                f"{path} was saved with torch.save and holds Python objects, not only tensors (a whole "
                f"module?), which only unpickling could load, running code from the file; it is not "
                f"TorchScript: {build}"
            )
    except Exception:  # not a torch file at all
        pass
    else:
        return f"{path} is a state dict / checkpoint, not TorchScript: {build}"
    return f"{path} is not a TorchScript file: {first_line(exc)}"


def _tensors(values: Sequence[torch.Tensor | Array]) -> list[torch.Tensor]:
    import torch

    tensors = []
    for value in values:
        if isinstance(value, torch.Tensor):
            tensors.append(value.detach().cpu())
        elif isinstance(value, np.ndarray):
            tensors.append(torch.from_numpy(np.ascontiguousarray(value)))
        else:
            raise ConversionFailed(
                f"example input must be a tensor or numpy array, got {type(value).__name__}"
            )
    return tensors


def _run_module(module: torch.nn.Module, inputs: list[torch.Tensor], what: str) -> list[Array]:
    import torch

    try:
        result = module(*inputs)
    except Exception as exc:  # whatever the user's forward raises
        raise ConversionFailed(f"the module fails on {what}: {first_line(exc)}") from exc
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    if not outputs or not all(isinstance(out, torch.Tensor) for out in outputs):
        raise ConversionFailed(
            f"the module must return a tensor or a tuple of tensors, got {type(result).__name__}"
        )
    return [out.detach().cpu().numpy() for out in outputs]


def _output_names(count: int, output_name: str | None) -> list[str]:
    if count == 1:
        return [output_name or "logits"]
    return [f"output_{i}" for i in range(count)]


def _export(
    module: torch.nn.Module,
    examples: list[torch.Tensor],
    example_outputs: list[Array],
    input_names: list[str],
    output_names: list[str],
) -> bytes:
    import torch

    dynamic_axes: dict[str, Any] = {
        name: {0: "batch"}
        for name, ndim in [
            *zip(input_names, (t.ndim for t in examples), strict=True),
            *zip(output_names, (a.ndim for a in example_outputs), strict=True),
        ]
        if ndim > 0
    }
    buffer = io.BytesIO()
    try:
        # The TorchScript exporter: ~20x faster than dynamo here, and it takes ScriptModules too.
        # It warns that it is deprecated; callers (and tests run with warnings as errors) need not.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(examples),
                buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ConversionFailed(f"PyTorch cannot export the module: {first_line(exc)}") from exc
    return buffer.getvalue()
