"""Pipelines: registered versions merged into one ONNX graph that gives what the steps give run one after
another, checked like an import, and versioned like a model."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from shipyard import pipelines
from shipyard.config import Settings
from shipyard.convert.check import run_onnx, signature_of
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.importing import import_onnx, import_sklearn
from shipyard.pipelines.links import Link, Step, connect, fit
from shipyard.processing import samples
from shipyard.registry import Registry, VersionRecord
from shipyard.signature import Scores, Signature, TensorSpec
from tests.models import digits_data, picture_cnn
from tests.unit.conftest import serving, unit_settings

FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE
PICTURES = "image: resize=40, center_crop=32, normalize=imagenet"
PETS = ["cat", "dog", "bird", "fish"]


def graph(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, list[Any]]],
    outputs: list[tuple[str, int, list[Any]]],
    constants: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> bytes:
    """A small model: nodes, (name, element type, shape) inputs and outputs, named constants."""
    made = helper.make_graph(
        nodes,
        "step",
        [helper.make_tensor_value_info(*spec) for spec in inputs],
        [helper.make_tensor_value_info(*spec) for spec in outputs],
        [numpy_helper.from_array(value, name) for name, value in (constants or {}).items()],
    )
    model = helper.make_model(made, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def scaler_onnx(dtype: type = np.float32, opset: int = 13) -> bytes:
    """(x - 8) / 4 on digits' 64 pixels (0..16), in `dtype` (float64: the graph casts x first)."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
    ]
    if dtype is np.float64:
        nodes = [helper.make_node("Cast", ["x"], ["x64"], to=DOUBLE), *nodes]
        nodes[1].input[0] = "x64"
    constants = {"mean": np.full(64, 8, dtype), "std": np.full(64, 4, dtype)}
    out_type = DOUBLE if dtype is np.float64 else FLOAT
    return graph(
        nodes, [("x", FLOAT, ["batch", 64])], [("scaled", out_type, ["batch", 64])], constants, opset
    )


def image_onnx() -> bytes:
    """Rows of 64 as 8x8 pictures, [-1, 1, 8, 8], at opset 19 (the other steps are older)."""
    nodes = [helper.make_node("Reshape", ["rows", "shape"], ["image"])]
    constants = {"shape": np.array([-1, 1, 8, 8], np.int64)}
    return graph(nodes, [("rows", FLOAT, ["n", 64])], [("image", FLOAT, ["n", 1, 8, 8])], constants, opset=19)


@cache
def classifier(c: float = 1.0) -> Any:
    """Logistic regression on 600 scaled digits (a fraction of a second); `c` makes another version."""
    from sklearn.linear_model import LogisticRegression

    X, y = digits_data()
    return LogisticRegression(C=c, max_iter=200).fit((X[:600] - 8) / 4, y[:600])


def register_steps(registry: Registry, tmp_path: Path) -> tuple[VersionRecord, VersionRecord]:
    """scaler:1 (ONNX, opset 13) and classifier:1 (scikit-learn), classifier:production -> 1."""
    path = tmp_path / "scaler.onnx"
    path.write_bytes(scaler_onnx())
    scaler = import_onnx(path, name="scaler", registry=registry)
    model = import_sklearn(classifier(), name="classifier", registry=registry)
    registry.set_alias("classifier", 1, "production")
    return scaler, model


def test_a_pipeline_gives_what_its_steps_give_one_after_another(registry: Registry, tmp_path: Path) -> None:
    scaler, model = register_steps(registry, tmp_path)
    record = pipelines.create("digits-pipe", ["scaler:1", "classifier:production"], registry=registry)

    assert (record.ref, record.framework) == ("digits-pipe:1", "pipeline")
    assert record.signature.inputs == scaler.signature.inputs
    assert record.signature.outputs == model.signature.outputs
    assert record.signature.scores == model.signature.scores
    assert record.labels == [str(i) for i in range(10)]
    assert record.check["passed"] and record.check["source"] == "generated"
    assert record.check["max_abs_diff"] <= 1e-6
    X, y = digits_data()
    labels, probabilities = run_onnx(registry.artifact(record), {"x": X})
    scaled = (X - 8) / 4
    by_hand_labels, by_hand_probabilities = run_onnx(registry.artifact(model), {"input": scaled})
    np.testing.assert_array_equal(labels, by_hand_labels)
    np.testing.assert_allclose(probabilities, by_hand_probabilities, atol=1e-6)
    assert (labels == y).mean() > 0.9
    # one graph on one opset: the scaler's opset 13 brought to the classifier's 17
    merged = onnx.load_from_string(registry.artifact(record))
    assert {(o.domain, o.version) for o in merged.opset_import} == {("", 17), ("ai.onnx.ml", 1)}
    assert [o.name for o in merged.graph.output] == ["label", "probabilities"]
    assert record.lineage == {
        "method": "pipeline",
        "steps": [
            {
                "model": "scaler",
                "version": 1,
                "sha256": scaler.sha256,
                "asked": "scaler:1",
                "framework": "onnx",
            },
            {
                "model": "classifier",
                "version": 1,
                "sha256": model.sha256,
                "asked": "classifier:production",
                "framework": "sklearn",
                "links": [{"output": "scaled", "input": "input", "adapters": []}],
            },
        ],
    }
    assert pipelines.steps_of(record) == record.lineage["steps"]


def test_a_float64_output_is_cast_and_a_picture_reshaped(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "scaler64.onnx"
    path.write_bytes(scaler_onnx(np.float64, opset=15))
    import_onnx(path, name="scaler64", registry=registry)
    path.write_bytes(image_onnx())
    import_onnx(path, name="image", registry=registry)
    import_sklearn(classifier(), name="classifier", registry=registry)

    record = pipelines.create("digits-pipe", "scaler64,image,classifier", registry=registry)

    links = [step.get("links") for step in pipelines.steps_of(record)]
    assert links == [
        None,
        [{"output": "scaled", "input": "rows", "adapters": ["Cast FP64 -> FP32"]}],
        [{"output": "image", "input": "input", "adapters": ["Reshape [-1, 1, 8, 8] -> [-1, 64]"]}],
    ]
    merged = onnx.load_from_string(registry.artifact(record))
    assert ("", 19) in {(o.domain, o.version) for o in merged.opset_import}  # the classifier's 17 raised
    assert {node.name for node in merged.graph.node} >= {"link1_0_cast", "link2_0_reshape"}
    X, _ = digits_data()
    got = run_onnx(registry.artifact(record), {"x": X[:100]})
    (scaled,) = run_onnx(registry.artifact(registry.version("scaler64")), {"x": X[:100]})
    (image,) = run_onnx(registry.artifact(registry.version("image")), {"rows": scaled.astype(np.float32)})
    by_hand = run_onnx(registry.artifact(registry.version("classifier")), {"input": image.reshape(-1, 64)})
    assert scaled.dtype == np.float64 and image.shape == (100, 1, 8, 8)
    np.testing.assert_array_equal(got[0], by_hand[0])
    np.testing.assert_allclose(got[1], by_hand[1], atol=1e-6)
    assert record.check["passed"] and record.check["max_abs_diff"] <= 1e-6


def test_inputs_named_as_the_outputs_before_are_joined_by_name(registry: Registry, tmp_path: Path) -> None:
    # split gives (low, high) in that order; difference takes (high, low): by name, not by position
    split = graph(
        [helper.make_node("Identity", ["x"], ["low"]), helper.make_node("Mul", ["x", "two"], ["high"])],
        [("x", FLOAT, ["n", 3])],
        [("low", FLOAT, ["n", 3]), ("high", FLOAT, ["n", 3])],
        {"two": np.array(2.0, np.float32)},
    )
    difference = graph(
        [helper.make_node("Sub", ["high", "low"], ["gap"])],
        [("high", FLOAT, ["n", 3]), ("low", FLOAT, ["n", 3])],
        [("gap", FLOAT, ["n", 3])],
    )
    for name, data in (("split", split), ("difference", difference)):
        (tmp_path / f"{name}.onnx").write_bytes(data)
        import_onnx(tmp_path / f"{name}.onnx", name=name, registry=registry)

    record = pipelines.create("gap", ["split", "difference"], registry=registry)

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (gap,) = run_onnx(registry.artifact(record), {"x": x})
    np.testing.assert_array_equal(gap, x)  # 2x - x
    assert [link["input"] for link in pipelines.steps_of(record)[1]["links"]] == ["high", "low"]


def test_new_step_versions_make_a_new_version_and_the_same_steps_the_same(
    registry: Registry, tmp_path: Path
) -> None:
    register_steps(registry, tmp_path)
    first = pipelines.create("digits-pipe", ["scaler", "classifier:production"], registry=registry)
    again = pipelines.create("digits-pipe", ["scaler:1", "classifier:1"], registry=registry)
    assert again == first

    newer = import_sklearn(classifier(0.05), name="classifier", registry=registry)
    registry.set_alias("classifier", newer.number, "production")
    second = pipelines.create("digits-pipe", ["scaler", "classifier:production"], registry=registry)
    assert second.number == 2
    assert [(s["model"], s["version"], s["sha256"]) for s in pipelines.steps_of(second)][1] == (
        "classifier",
        2,
        newer.sha256,
    )
    assert second.sha256 != first.sha256

    registry.set_alias("classifier", 1, "production")  # the first pipeline's steps again
    assert pipelines.create("digits-pipe", ["scaler", "classifier:production"], registry=registry) == first
    relabelled = pipelines.create(
        "digits-pipe", ["scaler", "classifier"], labels=list("abcdefghij"), registry=registry
    )
    assert relabelled.number == 3 and relabelled.labels == list("abcdefghij")

    # a model like any other: aliases choose the version served, the history says what was made
    registry.set_alias("digits-pipe", 2, "production")
    assert registry.version("digits-pipe").number == 2
    assert [e.kind for e in registry.history("digits-pipe")].count("created") == 3
    assert registry.model("digits-pipe").versions == (1, 2, 3)


def test_rows_of_a_dataset_feed_the_check(registry: Registry, tmp_path: Path) -> None:
    register_steps(registry, tmp_path)
    X, _ = digits_data()
    rows = tmp_path / "digits.npy"
    np.save(rows, X[:40])

    record = pipelines.create("digits-pipe", ["scaler", "classifier"], dataset=rows, registry=registry)

    assert (record.check["samples"], record.check["source"]) == (40, "user data")
    assert record.dataset is not None and record.dataset.name == "digits.npy"


def test_the_first_steps_features_and_the_last_steps_unit_are_the_pipelines(
    registry: Registry, tmp_path: Path
) -> None:
    scaler, _ = register_steps(registry, tmp_path)
    features = tuple(f"pixel{i}" for i in range(64))
    registry.register(
        "scaler",
        registry.artifact(scaler),
        signature=replace(scaler.signature, features=features),
        framework="onnx",
        check=scaler.check,
    )
    regress = graph(
        [helper.make_node("ReduceSum", ["v", "axes"], ["total"], keepdims=0)],
        [("v", FLOAT, ["n", 64])],
        [("total", FLOAT, ["n"])],
        {"axes": np.array([1], np.int64)},
    )
    total = registry.register(
        "total",
        regress,
        signature=replace(signature_of(onnx.load_from_string(regress)), unit="EUR"),
        framework="onnx",
        check=scaler.check,
    )

    record = pipelines.create("priced", ["scaler:2", "total"], registry=registry)

    assert record.signature.features == features and record.signature.inputs == scaler.signature.inputs
    assert record.signature.unit == "EUR" and record.signature.outputs == total.signature.outputs


def test_a_picture_models_recipe_runs_before_the_whole_pipeline(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    """The first step's host-side recipe is the pipeline's: the server decodes a picture into pixels,
    and one graph runs the recipe's graph half, the CNN and a softmax step after it."""
    (tmp_path / "cnn.onnx").write_bytes(picture_cnn())
    pets = import_onnx(
        tmp_path / "cnn.onnx", name="pets", labels=PETS, preprocess=PICTURES, registry=registry
    )
    softmax = graph(
        [helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        [("logits", FLOAT, ["n", 4])],
        [("probabilities", FLOAT, ["n", 4])],
    )
    (tmp_path / "softmax.onnx").write_bytes(softmax)
    import_onnx(tmp_path / "softmax.onnx", name="softmax", registry=registry)

    record = pipelines.create("pets-pipe", ["pets", "softmax"], labels=PETS, registry=registry)

    assert record.signature.inputs == pets.signature.inputs  # pictures in, as BYTES
    assert record.signature.preprocess == pets.signature.preprocess
    assert record.signature.scores == Scores("probabilities", "probabilities")
    with serving(registry, unit_settings(settings)) as (client, _):
        for picture in samples.pictures()[:3]:
            alone = client.post(
                "/v1/models/pets/predict", content=picture, headers={"content-type": "image/png"}
            )
            piped = client.post(
                "/v1/models/pets-pipe/predict", content=picture, headers={"content-type": "image/png"}
            )
            assert piped.status_code == 200, piped.text
            assert piped.json()["class"] == alone.json()["class"]
            assert piped.json()["confidence"] == pytest.approx(alone.json()["confidence"], abs=1e-5)


def test_the_connection_rule_on_signatures_alone() -> None:
    four, scores = TensorSpec("a", "FP32", (-1, 4)), TensorSpec("b", "FP32", (-1, 4))
    two_outputs = Signature(inputs=(), outputs=(four, scores), scores=Scores("b", "probabilities"))
    taker = Step("taker:1", Signature(inputs=(TensorSpec("x", "FP64", (-1, 2, 2)),), outputs=()))
    (link,) = connect(Step("scored:1", two_outputs), taker)  # both fit: the class scores are taken
    assert (link.output.name, link.adapters) == ("b", ["Cast FP32 -> FP64", "Reshape [-1, 4] -> [-1, 2, 2]"])
    with pytest.raises(ConversionFailed, match="several outputs of plain:1 fit input 'x' FP64"):
        connect(Step("plain:1", replace(two_outputs, scores=None)), taker)
    assert fit(TensorSpec("flag", "BOOL", (-1, 4)), TensorSpec("x", "FP32", (-1, 4))) is None
    assert fit(TensorSpec("ragged", "FP32", (-1, -1)), TensorSpec("x", "FP32", (-1, 2, 2))) is None
    assert fit(TensorSpec("fixed", "FP32", (3, 4)), TensorSpec("x", "FP32", (5, 4))) is None
    assert fit(TensorSpec("any", "FP32", (-1, -1)), TensorSpec("x", "FP32", (-1, 4))) == Link(
        TensorSpec("any", "FP32", (-1, -1)), TensorSpec("x", "FP32", (-1, 4))
    )


def test_unknown_steps_are_not_found(registry: Registry, tmp_path: Path) -> None:
    register_steps(registry, tmp_path)
    with pytest.raises(NotFound, match="no model named 'nope'"):
        pipelines.create("p", ["scaler", "nope"], registry=registry)
    with pytest.raises(NotFound, match="has no version 7"):
        pipelines.create("p", ["scaler", "classifier:7"], registry=registry)
    with pytest.raises(NotFound, match="no version or alias 'staging'"):
        pipelines.create("p", ["scaler", "classifier:staging"], registry=registry)
    with pytest.raises(InvalidInput, match=r"^scaler:1 is not a pipeline \(it is from onnx\)$"):
        pipelines.steps_of(registry.version("scaler"))


def test_one_step_is_not_a_pipeline(registry: Registry, tmp_path: Path) -> None:
    register_steps(registry, tmp_path)
    with pytest.raises(InvalidInput, match="at least two steps, got 1"):
        pipelines.create("p", ["scaler"], registry=registry)
    with pytest.raises(InvalidInput, match="cannot be a step of pipeline scaler"):
        pipelines.create("scaler", ["scaler", "classifier"], registry=registry)


def test_tensors_that_do_not_fit_are_refused_in_one_line(registry: Registry, tmp_path: Path) -> None:
    register_steps(registry, tmp_path)
    tens = graph(
        [helper.make_node("Identity", ["v"], ["w"])], [("v", FLOAT, ["n", 10])], [("w", FLOAT, ["n", 10])]
    )
    (tmp_path / "tens.onnx").write_bytes(tens)
    import_onnx(tmp_path / "tens.onnx", name="tens", registry=registry)

    with pytest.raises(ConversionFailed) as refused:
        pipelines.create("p", ["scaler", "tens"], registry=registry)
    assert str(refused.value) == (
        "cannot connect scaler:1 to tens:1: output 'scaled' FP32 [-1, 64] does not fit input 'v' FP32 "
        "[-1, 10] (a cast that keeps the values and a reshape to the same values per sample are the only "
        "adapters)"
    )
    with pytest.raises(ConversionFailed) as refused:
        pipelines.create("p", ["classifier", "scaler"], registry=registry)
    assert str(refused.value) == (
        "cannot connect classifier:1 to scaler:1: no output of classifier:1 ('label' INT64 [-1], "
        "'probabilities' FP32 [-1, 10]) fits input 'x' FP32 [-1, 64]"
    )
    assert "p" not in {m.name for m in registry.models()}


def test_a_later_step_with_a_preprocessing_recipe_is_refused(registry: Registry, tmp_path: Path) -> None:
    register_steps(registry, tmp_path)
    (tmp_path / "cnn.onnx").write_bytes(picture_cnn())
    import_onnx(tmp_path / "cnn.onnx", name="pets", labels=PETS, preprocess=PICTURES, registry=registry)
    with pytest.raises(InvalidInput, match=r"pets:1 \(step 2\) has a host-side preprocessing recipe"):
        pipelines.create("p", ["scaler", "pets"], registry=registry)


def test_a_pipeline_that_differs_from_its_steps_run_apart_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    # ONNX Runtime seeds each random node of a session in turn: run apart, both steps draw the same
    # noise (each is its session's first); merged, the second step draws other noise
    noisy = graph(
        [
            helper.make_node("RandomUniformLike", ["x"], ["noise"]),
            helper.make_node("Add", ["x", "noise"], ["y"]),
        ],
        [("x", FLOAT, ["n", 64])],
        [("y", FLOAT, ["n", 64])],
    )
    (tmp_path / "noisy.onnx").write_bytes(noisy)
    import_onnx(tmp_path / "noisy.onnx", name="noisy", registry=registry)

    with pytest.raises(
        ConversionFailed, match=r"numerical check failed: output 'y' differs by .* \(tolerance 0.001\)"
    ):
        pipelines.create("p", ["noisy", "noisy"], tolerance=1e-3, registry=registry)
    assert "p" not in {m.name for m in registry.models()}


def test_the_public_surface() -> None:
    assert sorted(pipelines.__all__) == ["METHOD", "create", "steps_of"]
