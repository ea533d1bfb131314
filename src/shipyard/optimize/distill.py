"""distill: train a smaller student on the teacher's soft labels, in PyTorch, and import it as ONNX.

The student is either given (`--student FILE`, a TorchScript module to train) or built from the
teacher's graph at `--width` times its hidden widths (see `student.py`). The teacher's outputs on
`--train` are computed once with ONNX Runtime; the student learns its softened class distribution
(temperature `--temperature`), or its raw outputs for a model without class scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shipyard.datasets import load_data
from shipyard.errors import InvalidInput
from shipyard.optimize.measure import Progress, Timing, load_runner, predict
from shipyard.optimize.methods import Candidate, Options, Source, finish
from shipyard.optimize.training import (
    distillation_loss,
    export,
    fit,
    load_torchscript,
    mse_loss,
    require_torch,
    single_io,
)

STAGE = "training the student"
EPOCHS = 60
LEARNING_RATE = 3e-3

Forward = Callable[[Any], Any]
"""What training calls on a batch (torch tensors in and out)."""


def run(source: Source, options: Options, progress: Progress) -> Candidate:
    require_torch("distill")
    import onnx

    if options.train is None:
        raise InvalidInput(
            "distill needs --train FILE: the inputs the student learns the teacher's answers on"
        )
    input_name, output_name = single_io(source, "distill")
    train = load_data(options.train, source.signature, label_column=options.label_column, need_labels=False)
    teacher = _teacher_outputs(source, train, output_name, progress)
    scores = source.signature.scores
    probabilities = scores is not None and scores.kind == "probabilities"
    if scores is not None and probabilities:
        teacher = np.log(np.clip(teacher, 1e-7, 1.0))  # logits up to a constant: same softmax
    student, forward, architecture = _student(source, options, teacher_probabilities=probabilities)
    epochs = options.epochs or EPOCHS
    fit(
        student,
        forward,
        train.inputs[input_name],
        teacher.astype(np.float32),
        distillation_loss(options.temperature) if scores is not None else mse_loss,
        epochs=epochs,
        learning_rate=options.learning_rate or LEARNING_RATE,
        batch_size=options.batch_size,
        seed=options.seed,
        progress=progress,
        stage=STAGE,
    )
    converted = export(student, source, input_name, output_name)
    used: dict[str, Any] = {
        "student": architecture,
        "width": None if options.student is not None else options.width,
        "train": train.info.name,
        "train_rows": train.rows,
        "epochs": epochs,
        "temperature": options.temperature if scores is not None else None,
        "learning_rate": options.learning_rate or LEARNING_RATE,
        "seed": options.seed,
    }
    model = onnx.load_model_from_string(converted.onnx_bytes)
    return finish(model, source, used, framework="pytorch", check=converted.check.to_dict())


def _student(source: Source, options: Options, *, teacher_probabilities: bool) -> tuple[Any, Forward, str]:
    """(the module to train and export, what its training calls, its architecture's name): the given
    TorchScript student, or one built from the teacher's graph at `options.width`. A given student
    answers like its teacher: when the teacher gives probabilities, its outputs go through log to be
    trained as logits (a built one learns logits, its softmax added on export)."""
    import onnx
    import torch

    torch.manual_seed(options.seed)
    if options.student is None:
        from shipyard.optimize.student import build_student

        built, architecture = build_student(onnx.load_model_from_string(source.onnx_bytes), options.width)
        return built, built.body, architecture
    student = load_torchscript(options.student)
    if teacher_probabilities:
        return student, lambda x: torch.log(student(x).clamp_min(1e-7)), options.student.name
    return student, student, options.student.name


def _teacher_outputs(source: Source, train: Any, output: str, progress: Progress) -> np.ndarray:
    runner = load_runner(source.ref, source.onnx_bytes, Timing())
    try:
        return predict(runner, train, output, progress)
    finally:
        runner.unload()
