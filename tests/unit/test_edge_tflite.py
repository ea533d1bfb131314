"""The tflite target: onnx2tf in its tool environment converts, the LiteRT interpreter checks.

The tool environment (onnx2tf and TensorFlow, ~2.6 GB) is made once under .venv-tools (`make tflite-tools`,
which `make test` runs first; or here, on the first run) and reused; these tests are skipped only where it
cannot be made (no package index)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from shipyard.edge import MANIFEST, Options, Report, export, onnx2tf_env
from shipyard.errors import ConversionFailed, InvalidInput, Unavailable
from shipyard.importing import import_onnx
from shipyard.registry import Registry
from tests.models import digits_data, digits_linear, picture_cnn

pytestmark = pytest.mark.slow
TOOLS = Path(__file__).resolve().parents[2] / ".venv-tools"


@pytest.fixture(scope="module")
def onnx2tf_python() -> Path:
    try:
        return onnx2tf_env.ensure(TOOLS)
    except Unavailable as exc:
        pytest.skip(f"the onnx2tf tool environment cannot be made here: {exc}")


@pytest.fixture(autouse=True)
def converter(onnx2tf_python: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(onnx2tf_env.ENV_PYTHON, str(onnx2tf_python))
    yield


def imported(
    registry: Registry, tmp_path: Path, name: str, model: bytes, preprocess: str | None = None
) -> None:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model)
    import_onnx(path, name=name, preprocess=preprocess, registry=registry)


def manifest(out: Path) -> dict[str, object]:
    found: dict[str, object] = orjson.loads((out / MANIFEST).read_bytes())
    return found


def exported(report: Report, registry: Registry, out: Path) -> None:
    """What every tflite export holds: the .tflite and the manifest, the converter named, the check on
    LiteRT within float32's reach of the server, and the export in the history."""
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", MANIFEST]
    data = manifest(out)
    assert data["model_file"] == "model.tflite"
    assert data["converter"] == {
        "name": "onnx2tf",
        "version": onnx2tf_env.ONNX2TF,
        "tensorflow": "2.19.0",
        "arguments": data["converter"]["arguments"],  # type: ignore[index]
    }
    assert report.ran.runtime.startswith("LiteRT 2.")
    assert report.check.max_abs_diff < 1e-4
    assert report.check.top1 == 1.0
    assert report.size == (out / "model.tflite").stat().st_size
    events = [e for e in registry.history(report.record.model) if e.kind == "export"]
    assert [e.version for e in events] == [report.record.number]
    assert events[0].detail.startswith(f"tflite to {out}: max |diff|")


def test_digits_on_litert_answers_as_the_server(registry: Registry, tmp_path: Path) -> None:
    imported(registry, tmp_path, "digits", digits_linear().onnx_bytes)
    out = tmp_path / "digits-tflite"

    report = export(registry, "digits", "tflite", out)

    exported(report, registry, out)
    assert report.operators == ["RESHAPE", "FULLY_CONNECTED"]
    # the .tflite alone, as an app would run it: the real digits' classes are the linear model's
    X, _ = digits_data()
    runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    logits = runner(input=X[:50])["logits"]
    model = digits_linear()
    np.testing.assert_allclose(logits, X[:50] @ model.W + model.b, rtol=1e-5, atol=1e-4)


def test_a_picture_model_keeps_its_uint8_pixels_input(registry: Registry, tmp_path: Path) -> None:
    recipe = "image: resize=40, center_crop=32, normalize=imagenet"
    imported(registry, tmp_path, "pictures", picture_cnn(), preprocess=recipe)
    out = tmp_path / "pictures-tflite"

    report = export(registry, "pictures", "tflite", out)

    exported(report, registry, out)
    assert report.check.samples == 6  # the check's pictures, decoded as the server decodes them
    assert {"CONV_2D", "CAST"} <= set(report.operators)
    # the device is fed what the graph is fed: uint8 [batch, 32, 32, 3], the batch left open
    (pixels,) = (
        Interpreter(model_path=str(out / "model.tflite")).get_signature_runner().get_input_details().values()
    )
    assert pixels["dtype"] is np.uint8
    assert pixels["shape_signature"].tolist() == [-1, 32, 32, 3]


def conv_features() -> bytes:
    """A 3x3 convolution on [batch, 3, 16, 16] to feature maps [batch, 8, 16, 16] (NCHW in and out)."""
    weight = np.random.default_rng(3).normal(0, 1, (8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["features"], pads=[1, 1, 1, 1])],
        "conv_features",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8, 16, 16])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_feature_maps_come_out_channels_last_and_the_manifest_says_so(
    registry: Registry, tmp_path: Path
) -> None:
    imported(registry, tmp_path, "features", conv_features())
    out = tmp_path / "features-tflite"

    report = export(registry, "features", "tflite", out)

    assert report.check.max_abs_diff < 1e-4  # compared in the server's layout
    assert manifest(out)["channels_last_outputs"] == ["features"]
    details = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    assert details.get_input_details()["x"]["shape_signature"].tolist() == [-1, 3, 16, 16]
    assert details.get_output_details()["features"]["shape_signature"].tolist() == [-1, 16, 16, 8]


def linear_classifier() -> bytes:
    """scikit-learn's logistic regression as skl2onnx writes it (ai.onnx.ml LinearClassifier): ONNX
    Runtime runs it, onnx2tf has no such operator."""
    coefficients = np.random.default_rng(5).normal(size=12).tolist()
    node = helper.make_node(
        "LinearClassifier", ["x"], ["label", "probabilities"], domain="ai.onnx.ml",
        coefficients=coefficients, intercepts=[0.0, 0.0, 0.0], classlabels_ints=[0, 1, 2],
        post_transform="SOFTMAX",
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "linear_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_an_operator_onnx2tf_lacks_is_one_line_and_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    imported(registry, tmp_path, "iris", linear_classifier())
    out = tmp_path / "iris-tflite"

    with pytest.raises(ConversionFailed) as caught:
        export(registry, "iris", "tflite", out)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"onnx2tf {onnx2tf_env.ONNX2TF} cannot convert iris:1 to TensorFlow Lite: ")
    assert "LinearClassifier" in message
    assert not out.exists()
    assert list(tmp_path.glob(".iris-tflite.*")) == []  # the staging folder is gone too
    assert "export" not in [e.kind for e in registry.history("iris")]


def test_a_python_without_onnx2tf_is_named(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported(registry, tmp_path, "digits", digits_linear().onnx_bytes)
    monkeypatch.setenv(onnx2tf_env.ENV_PYTHON, sys.executable)  # shipyard's own: no onnx2tf in it

    with pytest.raises(Unavailable) as caught:
        export(registry, "digits", "tflite", tmp_path / "out")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{sys.executable} has no onnx2tf (")
    assert onnx2tf_env.ENV_PYTHON in message
    assert not (tmp_path / "out").exists()


def test_the_tool_environment_is_reused_once_made(onnx2tf_python: Path) -> None:
    stamp = onnx2tf_python.parents[1] / onnx2tf_env.STAMP
    made = stamp.stat().st_mtime_ns

    assert onnx2tf_env.ensure(TOOLS) == onnx2tf_python

    assert stamp.stat().st_mtime_ns == made
    assert stamp.read_text().split() == list(onnx2tf_env.REQUIREMENTS)


def test_int8_weights_are_refused_for_tflite(registry: Registry, tmp_path: Path) -> None:
    imported(registry, tmp_path, "digits", digits_linear().onnx_bytes)

    with pytest.raises(InvalidInput, match=r"^--int8 is for ort-mobile: the tflite export is float32$"):
        export(registry, "digits", "tflite", tmp_path / "out", Options(int8=True))

    assert not (tmp_path / "out").exists()


def test_without_a_package_index_the_environment_is_not_made_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no mirror, no extra index, no local wheels
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)

    with pytest.raises(Unavailable) as caught:
        onnx2tf_env.ensure(tmp_path / "tools")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"pip install onnx2tf=={onnx2tf_env.ONNX2TF} ")
    assert f"No matching distribution found for onnx2tf=={onnx2tf_env.ONNX2TF}" in message
    assert onnx2tf_env.ENV_PYTHON in message
    assert not onnx2tf_env.location(tmp_path / "tools").exists()
