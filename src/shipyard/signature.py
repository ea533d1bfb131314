"""A model version's signature: named, typed, shaped inputs and outputs, plus how to read its scores.

Read once from the ONNX graph at import and stored in the registry, so the server validates requests
and the friendly API interprets outputs without opening the model file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from shipyard.datatypes import v2_datatype
from shipyard.errors import InvalidInput

ScoreKind = Literal["probabilities", "logits", "sigmoid"]
"""How class scores are read: as probabilities, as logits (softmax), or as one logit per class of a
multi-label model (sigmoid, each class on its own)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: v2 datatype name and shape, with -1 for a dynamic axis."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def batched(self) -> bool:
        """True when the first axis is dynamic, so requests may stack samples along it."""
        return len(self.shape) > 0 and self.shape[0] == -1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True)
class Scores:
    """Which output holds class scores, and how to read them."""

    output: str
    kind: ScoreKind
    threshold: float | None = None
    """Multi-label: every class whose probability reaches it is predicted (None: one class a row)."""
    top_k: int = 0
    """How many top classes /predict adds when a request does not say (?top_k=)."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"output": self.output, "kind": self.kind}
        if self.threshold is not None:
            data["threshold"] = self.threshold
        if self.top_k:
            data["top_k"] = self.top_k
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        threshold = data.get("threshold")
        return cls(
            str(data["output"]),
            data["kind"],
            None if threshold is None else float(threshold),
            int(data.get("top_k") or 0),
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    scores: Scores | None = field(default=None)
    features: tuple[str, ...] | None = None
    """The column names of a tabular model's one input ([-1, len(features)]), in order: the friendly
    API takes {"input": {"age": 42, ...}} by them."""
    preprocess: dict[str, Any] | None = None
    """The recipe that turns what users send (image bytes) into the graph's input, done by the server
    before the graph runs (shipyard/processing/); None when the graph takes the inputs as they are."""
    unit: str | None = None
    """What a regression's output measures (EUR, ms, kg): the friendly API says it with the value."""

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)

    @cached_property
    def batched(self) -> bool:
        """Every input has a batch axis: requests may be stacked along it, and a request of n rows
        holds n predictions."""
        return all(spec.batched for spec in self.inputs)

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        """The outputs' names in order; every request that names its outputs is checked against them."""
        return tuple(spec.name for spec in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "scores": self.scores.to_dict() if self.scores else None,
        }
        extra = {"features": self.features and list(self.features), "preprocess": self.preprocess}
        data.update((key, value) for key, value in {**extra, "unit": self.unit}.items() if value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        scores = data.get("scores")
        return cls(
            inputs=tuple(TensorSpec.from_dict(d) for d in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(d) for d in data["outputs"]),
            scores=Scores.from_dict(scores) if scores else None,
            features=tuple(data["features"]) if data.get("features") is not None else None,
            preprocess=data.get("preprocess"),
            unit=data.get("unit"),
        )


def format_shape(shape: tuple[int, ...] | list[int]) -> str:
    """Shapes in messages look like JSON: [-1, 64]."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_inputs(signature: Signature, inputs: dict[str, Any]) -> None:
    """Refuse inputs that do not match the signature, naming the tensor and what differs.

    `inputs` maps names to numpy arrays whose dtype is already the request's declared datatype.
    """
    expected = {spec.name for spec in signature.inputs}
    for name in inputs:
        if name not in expected:
            names = ", ".join(repr(n) for n in sorted(expected))
            raise InvalidInput(f"unknown input {name!r}: the model's inputs are {names}")
    for spec in signature.inputs:
        array = inputs.get(spec.name)
        if array is None:
            raise InvalidInput(f"missing input {spec.name!r}")
        datatype = v2_datatype(array.dtype)
        if datatype != spec.datatype:
            raise InvalidInput(f"input {spec.name!r}: expected datatype {spec.datatype}, got {datatype}")
        shape = array.shape
        if array.size == 0:
            raise InvalidInput(
                f"input {spec.name!r} holds no values (shape {format_shape(shape)}): send at least one"
            )
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"input {spec.name!r}: expected shape {format_shape(spec.shape)}, got {format_shape(shape)}"
            )


def check_outputs(signature: Signature, names: list[str] | None) -> list[str]:
    """The outputs asked for by name (all of the model's when None), each checked against the signature."""
    known = signature.output_names
    if names is None:
        return list(known)
    for name in names:
        if name not in known:
            listed = ", ".join(map(repr, known))
            raise InvalidInput(f"unknown output {name!r}: the model's outputs are {listed}")
    return names
