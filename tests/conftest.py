"""Fixtures shared by every layer: a registry in a temporary SHIPYARD_HOME and models built in code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.config import Settings
from shipyard.registry import Registry, VersionRecord
from shipyard.signature import Scores, Signature, TensorSpec
from tests.models import digits_linear, many_types

DIGITS_SIGNATURE = Signature(
    inputs=(TensorSpec("input", "FP32", (-1, 64)),),
    outputs=(TensorSpec("logits", "FP32", (-1, 10)),),
    scores=Scores("logits", "logits"),
)
LABELS = [str(i) for i in range(10)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry.open(settings)
    yield reg
    reg.close()


def register_digits(registry: Registry, name: str = "digits", **kwargs: object) -> VersionRecord:
    return registry.register(
        name,
        digits_linear().onnx_bytes,
        signature=DIGITS_SIGNATURE,
        framework="onnx",
        check={"passed": True, "max_abs_diff": None, "tolerance": 0.0, "samples": 1, "source": "test"},
        labels=LABELS,
        **kwargs,  # type: ignore[arg-type]
    )


def register_many_types(registry: Registry) -> VersionRecord:
    import onnx

    from shipyard.convert.check import signature_of

    signature = signature_of(onnx.load_from_string(many_types()))
    return registry.register(
        "types",
        many_types(),
        signature=signature,
        framework="onnx",
        check={"passed": True, "source": "test"},
    )
