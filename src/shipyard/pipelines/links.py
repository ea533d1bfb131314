"""The connection rule: which output of one step feeds which input of the next, and through what.

Pure: it reads signatures only, so the rule is the same for the merged graph and for the check that
runs the steps one after another. A link may carry two adapters, each safe because it keeps every
value: a numeric Cast (float64 -> float32, int64 -> float32, ...) and a Reshape between shapes that
hold the same number of values per sample ([-1, 1, 8, 8] -> [-1, 64]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.datatypes import numpy_dtype
from shipyard.errors import ConversionFailed
from shipyard.signature import Signature, TensorSpec, format_shape

_NUMERIC = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
)


@dataclass(frozen=True)
class Step:
    """One step as the rule sees it: how the user named it, what it resolved to, and its signature."""

    ref: str  # the resolved version, e.g. classifier:3
    signature: Signature


@dataclass(frozen=True)
class Link:
    """`output` of a step feeds `input` of the next, cast to `cast` and reshaped to `reshape` first
    where those are set."""

    output: TensorSpec
    input: TensorSpec
    cast: str | None = None  # the v2 datatype to cast to
    reshape: tuple[int, ...] | None = None  # the shape to reshape to, batch axis -1

    @property
    def adapters(self) -> list[str]:
        """What runs between the two, as `pipeline show` and the lineage say it."""
        said = []
        if self.cast is not None:
            said.append(f"Cast {self.output.datatype} -> {self.cast}")
        if self.reshape is not None:
            said.append(f"Reshape {format_shape(self.output.shape)} -> {format_shape(self.reshape)}")
        return said

    def adapt(self, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The adapters done in numpy: what the check feeds the next step when it runs them apart."""
        if self.cast is not None:
            array = array.astype(numpy_dtype(self.cast))
        if self.reshape is not None:
            array = array.reshape(self.reshape)
        return array

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output.name, "input": self.input.name, "adapters": self.adapters}


def connect(before: Step, after: Step) -> list[Link]:
    """How `before`'s outputs feed `after`'s inputs.

    By name when every input of `after` is an output of `before`; else, when `after` has one input,
    from the one output of `before` that fits it (the class scores when they fit). Anything else is
    refused with one line naming both steps and the tensors.
    """
    outputs = {spec.name: spec for spec in before.signature.outputs}
    inputs = after.signature.inputs
    if inputs and all(spec.name in outputs for spec in inputs):
        links = []
        for spec in inputs:
            link = fit(outputs[spec.name], spec)
            if link is None:
                raise ConversionFailed(_misfit(before, after, outputs[spec.name], spec))
            links.append(link)
        return links
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise ConversionFailed(
            f"cannot connect {before.ref} to {after.ref}: {after.ref} has inputs {names}, which are not "
            f"all outputs of {before.ref} ({', '.join(outputs)}); a later step takes one input, or "
            "inputs named as the outputs of the step before it"
        )
    (wanted,) = inputs
    fitting = [link for spec in before.signature.outputs if (link := fit(spec, wanted)) is not None]
    scores = before.signature.scores
    chosen = [link for link in fitting if scores is not None and link.output.name == scores.output]
    if chosen or len(fitting) == 1:
        return [(chosen or fitting)[0]]
    if not fitting:
        if len(before.signature.outputs) == 1:
            raise ConversionFailed(_misfit(before, after, before.signature.outputs[0], wanted))
        listed = ", ".join(_tensor(spec) for spec in before.signature.outputs)
        raise ConversionFailed(
            f"cannot connect {before.ref} to {after.ref}: no output of {before.ref} ({listed}) fits "
            f"input {_tensor(wanted)}"
        )
    listed = ", ".join(_tensor(link.output) for link in fitting)
    raise ConversionFailed(
        f"cannot connect {before.ref} to {after.ref}: several outputs of {before.ref} fit input "
        f"{_tensor(wanted)} ({listed}) and none is its class scores; name the input as one of them"
    )


def fit(produced: TensorSpec, taken: TensorSpec) -> Link | None:
    """The link from output `produced` to input `taken` with the adapters it needs, or None when no
    safe adapter makes one fit the other."""
    cast: str | None = None
    if produced.datatype != taken.datatype:
        if not _castable(produced.datatype, taken.datatype):
            return None
        cast = taken.datatype
    reshape: tuple[int, ...] | None = None
    if not _same_shape(produced.shape, taken.shape):
        if not _same_per_sample(produced.shape, taken.shape):
            return None
        reshape = (-1, *taken.shape[1:])
    return Link(produced, taken, cast, reshape)


def _castable(source: str, target: str) -> bool:
    """A cast that keeps the values: to a type that holds every value of the other (numpy's "safe"),
    or to a float (an int, or a wider float: values kept, precision not). Never a float to an int, nor
    to a narrower or unsigned int, which numpy and ONNX Runtime would each clip or wrap their own way."""
    if source not in _NUMERIC or target not in _NUMERIC:
        return False
    a, b = numpy_dtype(source), numpy_dtype(target)
    return bool(np.can_cast(a, b, "safe")) or (a.kind in "iuf" and b.kind == "f")


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _same_per_sample(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Both have a batch axis that agrees and known, equal numbers of values per sample."""
    if not a or not b or not (a[0] == b[0] or -1 in (a[0], b[0])):
        return False
    rest_a, rest_b = a[1:], b[1:]
    if any(d <= 0 for d in (*rest_a, *rest_b)):
        return False
    return math.prod(rest_a) == math.prod(rest_b)


def _tensor(spec: TensorSpec) -> str:
    return f"'{spec.name}' {spec.datatype} {format_shape(spec.shape)}"


def _misfit(before: Step, after: Step, produced: TensorSpec, taken: TensorSpec) -> str:
    return (
        f"cannot connect {before.ref} to {after.ref}: output {_tensor(produced)} does not fit input "
        f"{_tensor(taken)} (a cast that keeps the values and a reshape to the same values per sample "
        "are the only adapters)"
    )
