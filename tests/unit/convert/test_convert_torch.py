"""PyTorch modules and TorchScript files to ONNX, with the numerical check that guards each one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from shipyard.convert import from_module, from_torchscript, run_onnx
from shipyard.errors import ConversionFailed, NotFound
from shipyard.signature import Scores, TensorSpec


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    features, _ = load_digits(return_X_y=True)
    return (features / 16.0).astype(np.float32)


def _mlp(*tail: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10), *tail)


def _torch_outputs(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x)).numpy()


def test_an_mlp_gives_the_same_logits_at_any_batch_size(digits: np.ndarray) -> None:
    mlp = _mlp()

    converted = from_module(mlp, digits[:2])

    assert converted.framework == "pytorch"
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert converted.signature.outputs == (TensorSpec("logits", "FP32", (-1, 10)),)
    assert converted.signature.scores == Scores("logits", "logits")
    for batch in (1, 37):
        (logits,) = run_onnx(converted.onnx_bytes, {"input": digits[:batch]})
        np.testing.assert_allclose(logits, _torch_outputs(mlp, digits[:batch]), atol=1e-5)


def test_the_check_runs_on_a_generated_batch_of_eight(digits: np.ndarray) -> None:
    check = from_module(_mlp(), torch.from_numpy(digits[:1])).check

    assert check.passed and check.source == "generated" and check.samples == 8
    assert check.max_abs_diff is not None and check.max_abs_diff < check.tolerance == 1e-4


def test_the_check_runs_on_user_data_when_given(digits: np.ndarray) -> None:
    check = from_module(_mlp(), digits[:2], sample=digits[:50]).check

    assert check.source == "user data" and check.samples == 50


def test_a_module_ending_in_softmax_gives_probabilities(digits: np.ndarray) -> None:
    converted = from_module(
        _mlp(torch.nn.Softmax(dim=1)), digits[:2], input_name="pixels", output_name="probabilities"
    )

    assert converted.signature.inputs[0].name == "pixels"
    assert converted.signature.scores == Scores("probabilities", "probabilities")


def test_the_module_is_left_in_the_mode_it_was_in(digits: np.ndarray) -> None:
    mlp = _mlp(torch.nn.Dropout(0.5)).train()

    from_module(mlp, digits[:2])

    assert mlp.training


class _TwoInTwoOut(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


def test_several_inputs_and_outputs_are_numbered() -> None:
    example = (torch.ones(2, 3), np.ones((2, 3), np.float32))

    converted = from_module(_TwoInTwoOut(), example)

    assert [spec.name for spec in converted.signature.inputs] == ["input_0", "input_1"]
    assert [spec.name for spec in converted.signature.outputs] == ["output_0", "output_1"]
    assert all(spec.shape == (-1, 3) for spec in converted.signature.outputs)


class _DiffersInExport(torch.nn.Module):
    """Computes something else while being exported: the kind of bug the check exists for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return x + 0.5
        return x


def test_a_conversion_that_changes_the_numbers_is_refused() -> None:
    with pytest.raises(ConversionFailed) as info:
        from_module(_DiffersInExport(), torch.zeros(2, 4))

    assert str(info.value) == ("numerical check failed: output 'logits' differs by 0.5 (tolerance 0.0001)")


def test_a_module_that_fails_on_its_example_is_refused(digits: np.ndarray) -> None:
    with pytest.raises(ConversionFailed, match="the module fails on the example input"):
        from_module(_mlp(), digits[:2, :10])


def test_something_that_is_not_a_module_is_refused() -> None:
    with pytest.raises(ConversionFailed, match=r"expected a torch\.nn\.Module"):
        from_module(lambda x: x, torch.zeros(1, 2))  # type: ignore[arg-type]


def test_a_torchscript_file_converts(digits: np.ndarray, tmp_path: Path) -> None:
    mlp = _mlp().eval()
    path = tmp_path / "mlp.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.x
        torch.jit.save(torch.jit.trace(mlp, torch.from_numpy(digits[:2])), str(path))

    converted = from_torchscript(path, (-1, 64))

    assert converted.framework == "torchscript"  # as `model import --framework torchscript` names it
    assert converted.signature.inputs == (TensorSpec("input", "FP32", (-1, 64)),)
    assert converted.check.passed
    (logits,) = run_onnx(converted.onnx_bytes, {"input": digits[:37]})
    np.testing.assert_allclose(logits, _torch_outputs(mlp, digits[:37]), atol=1e-5)


def test_a_file_that_is_not_torchscript_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"definitely not a zip archive")

    with pytest.raises(ConversionFailed, match="is not a TorchScript file") as info:
        from_torchscript(path, (1, 64))
    assert "\n" not in str(info.value)


def test_a_state_dict_is_told_apart_from_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"model": _mlp().state_dict(), "epoch": 3}, path)

    with pytest.raises(ConversionFailed, match="is a state dict / checkpoint, not TorchScript") as info:
        from_torchscript(path, (1, 64))
    assert "shipyard.import_torch(module, example_input, name=...)" in str(info.value)


def test_a_whole_pickled_module_is_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_mlp(), path)

    with pytest.raises(ConversionFailed, match=r"saved with torch\.save and holds Python objects"):
        from_torchscript(path, (1, 64))


def test_a_missing_torchscript_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        from_torchscript(tmp_path / "absent.pt", (1, 64))
