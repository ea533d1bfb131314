"""Post-processing declared at import, as /predict answers it: multi-label thresholds, a default top_k
that a request may override, and a regression's unit (the server in-process, real ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from shipyard.config import Settings
from shipyard.importing import import_onnx
from shipyard.registry import Registry
from shipyard.scoring import sigmoid
from tests.unit.conftest import serving, unit_settings

W = np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], dtype=np.float32)


def linear(path: Path, outputs: int) -> Path:
    """y = x @ W[:, :outputs], on two features."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        [numpy_helper.from_array(np.ascontiguousarray(W[:, :outputs]), "W")],
    )
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


def test_declared_post_processing_shapes_the_answers(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    tags = linear(tmp_path / "tags.onnx", 3)
    import_onnx(tags, name="tags", labels=["red", "green", "blue"], registry=registry,
                postprocess="sigmoid, threshold=0.45, top_k=2")  # fmt: skip
    import_onnx(linear(tmp_path / "price.onnx", 1), name="price", registry=registry,
                postprocess="regression, unit=EUR")  # fmt: skip
    x = [2.0, 1.0]
    p = sigmoid(np.array(x, dtype=np.float64) @ W.astype(np.float64))
    with serving(registry, unit_settings(settings)) as (client, _):
        tagged = client.post("/v1/models/tags/predict", json={"input": x}).json()
        assert tagged["classes"] == [
            {"class": label, "confidence": pytest.approx(float(p[i]), abs=1e-6)}
            for i, label in ((0, "red"), (2, "blue"))  # green's 0.05 is under the threshold
        ]
        assert [c["class"] for c in tagged["top_k"]] == ["red", "blue"]  # the declared top_k
        plain = client.post("/v1/models/tags/predict?top_k=0", json={"input": x}).json()
        assert "top_k" not in plain and plain["class"] == "red"
        price = client.post("/v1/models/price/predict", json={"inputs": [x, [1.0, 1.0]]}).json()
        assert [(a["prediction"], a["unit"]) for a in price] == [
            (pytest.approx(2.5), "EUR"),
            (pytest.approx(1.5), "EUR"),
        ]
    assert onnx.load(str(tags)).graph.output[0].name == "y"
