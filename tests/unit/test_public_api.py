"""The public surface: what `import shipyard` exports, and what the server must not import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

import shipyard
from shipyard.registry import Registry
from tests.models import digits_data


def test_exported_members() -> None:
    assert sorted(shipyard.__all__) == [
        "Conflict",
        "ConversionFailed",
        "CorruptArtifact",
        "InvalidInput",
        "NotFound",
        "Overloaded",
        "PayloadTooLarge",
        "Registry",
        "Settings",
        "ShipyardError",
        "Signature",
        "TensorSpec",
        "Unavailable",
        "VersionRecord",
        "__version__",
        "import_boosting",
        "import_keras",
        "import_onnx",
        "import_sklearn",
        "import_torch",
    ]
    for name in shipyard.__all__:
        assert hasattr(shipyard, name)


def test_the_server_imports_no_training_framework() -> None:
    code = (
        "import sys, shipyard, shipyard.server.http, shipyard.cli, shipyard.runtime, shipyard.dataplane\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'tensorflow', 'ray', 'skl2onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_core_does_no_web_and_no_io() -> None:
    """protocol/, signature and errors stay usable alone: no web framework, grpc or database."""
    code = (
        "import sys, shipyard.protocol.v2, shipyard.protocol.predict, shipyard.signature, shipyard.errors\n"
        "banned = ('fastapi', 'starlette', 'grpc', 'sqlalchemy', 'onnxruntime')\n"
        "print(sorted(m for m in banned if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_torch_registers_a_checked_version(registry: Registry) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    X, _ = digits_data()
    record = shipyard.import_torch(
        module, torch.zeros(1, 64), name="mlp", labels=[str(i) for i in range(10)], registry=registry
    )
    assert (record.model, record.number, record.framework) == ("mlp", 1, "pytorch")
    assert record.check["passed"] and record.check["max_abs_diff"] <= 1e-4
    assert record.signature.inputs[0].shape == (-1, 64)
    with torch.no_grad():
        expected = module(torch.from_numpy(X[:5])).numpy()
    from shipyard.convert import run_onnx

    (got,) = run_onnx(registry.artifact(record), {"input": X[:5]})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_import_sklearn_keeps_probabilities_and_labels(registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = digits_data()
    clf = LogisticRegression(max_iter=300).fit(X, y)
    record = shipyard.import_sklearn(clf, name="lr", sample=X[:32], registry=registry)
    assert record.labels == [str(i) for i in range(10)]
    assert record.signature.scores is not None and record.signature.scores.kind == "probabilities"
    assert record.check["source"] == "user data" and record.check["samples"] == 32


def test_import_onnx_refuses_an_invalid_graph(registry: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["missing"], ["y"])],
            "bad",
            [],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    (tmp_path / "bad.onnx").write_bytes(bad.SerializeToString())
    with pytest.raises(shipyard.ConversionFailed):
        shipyard.import_onnx(tmp_path / "bad.onnx", name="bad", registry=registry)
    assert registry.models() == []


def test_registry_exports() -> None:
    import dataclasses
    import inspect

    import shipyard.registry
    from shipyard.registry import TokenRecord
    from shipyard.registry.tokens import SCOPES, hash_token

    assert sorted(shipyard.registry.__all__) == [
        "ArtifactStore",
        "DatasetInfo",
        "Event",
        "JobRecord",
        "ModelSummary",
        "Registry",
        "RolloutRecord",
        "ScheduleRecord",
        "TokenRecord",
        "VersionRecord",
        "parse_ref",
    ]
    assert SCOPES == ("predict", "feedback", "read", "admin")
    assert hash_token("shp_x") == "76294e967ccb86679498247b6e179f5c523a8d37e6690503e8d2d489f3c0fb9f"
    fields = {f.name: f.type for f in dataclasses.fields(TokenRecord)}
    assert fields == {
        "name": "str",
        "scopes": "tuple[str, ...]",
        "models": "tuple[str, ...] | None",
        "rate_per_s": "float | None",
        "burst": "int | None",
        "sha256": "str",
        "created_at": "datetime",
    }
    assert TokenRecord.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert list(inspect.signature(Registry.create_token).parameters) == [
        "self",
        "name",
        "scopes",
        "models",
        "rate_per_s",
        "burst",
    ]
