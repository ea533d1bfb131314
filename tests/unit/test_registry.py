"""The registry on a real database: SQLite here, PostgreSQL too when SHIPYARD_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from shipyard.errors import CorruptArtifact, InvalidInput, NotFound
from shipyard.registry import DatasetInfo, Registry, parse_ref
from shipyard.registry.artifacts import ArtifactStore, sha256_bytes
from tests.conftest import register_digits, registry_on_every_engine
from tests.models import digits_linear

registry = registry_on_every_engine()


def test_versions_are_numbered_and_identical_bytes_are_stored_once(registry: Registry) -> None:
    v1 = register_digits(registry)
    v2 = register_digits(registry, description="same bytes again")
    assert (v1.number, v2.number) == (1, 2)
    assert v1.sha256 == v2.sha256 == sha256_bytes(digits_linear().onnx_bytes)
    blobs = [p for p in registry.artifacts.root.rglob("*") if p.is_file()]
    assert len(blobs) == 1


def test_manifest_round_trips(registry: Registry) -> None:
    dataset = DatasetInfo("digits.npz", 1234, "ab" * 32)
    register_digits(registry, description="first", dataset=dataset)
    record = registry.version("digits", 1)
    assert record.signature.inputs[0].shape == (-1, 64)
    assert record.signature.scores is not None and record.signature.scores.kind == "logits"
    assert record.labels == [str(i) for i in range(10)]
    assert record.dataset == dataset
    assert record.description == "first"
    assert record.created_at.tzinfo is not None
    assert registry.artifact(record) == digits_linear().onnx_bytes


def test_default_version_is_production_else_latest(registry: Registry) -> None:
    for _ in range(3):
        register_digits(registry)
    assert registry.version("digits").number == 3
    registry.set_alias("digits", 2, "production")
    assert registry.version("digits").number == 2
    assert registry.version("digits", "production").number == 2
    assert registry.version("digits", "latest").number == 3
    assert registry.version("digits", "2").aliases == ("production",)


def test_restore_and_history(registry: Registry) -> None:
    for _ in range(3):
        register_digits(registry)
    assert registry.set_alias("digits", 3, "production") is None
    assert registry.restore("digits", 1) == 3
    events = registry.history("digits")
    assert [(e.kind, e.version, e.from_version) for e in events] == [
        ("created", 1, None),
        ("created", 2, None),
        ("created", 3, None),
        ("alias", 3, None),
        ("restore", 1, 3),
    ]
    assert all(e.created_at <= f.created_at for e, f in itertools.pairwise(events))
    assert registry.version("digits").number == 1


def test_delete_version_never_reuses_its_number(registry: Registry) -> None:
    register_digits(registry)
    register_digits(registry)
    registry.set_alias("digits", 2, "production")
    assert registry.delete("digits", 2) == [2]
    assert registry.model("digits").aliases == {}
    assert register_digits(registry).number == 3
    with pytest.raises(NotFound, match="no version 2"):
        registry.version("digits", 2)


def test_delete_model_removes_unused_artifacts_keeps_history(registry: Registry) -> None:
    record = register_digits(registry)
    registry.delete("digits")
    assert not registry.artifacts.path(record.sha256).exists()
    assert registry.models() == []
    assert registry.history("digits")[-1].kind == "deleted"


def test_errors_name_the_problem(registry: Registry) -> None:
    register_digits(registry)
    with pytest.raises(NotFound, match="no model named 'nope'"):
        registry.version("nope")
    with pytest.raises(NotFound, match="no version or alias 'staging'"):
        registry.version("digits", "staging")
    with pytest.raises(NotFound, match="no version 9"):
        registry.set_alias("digits", 9, "production")
    with pytest.raises(InvalidInput, match="bad alias"):
        registry.set_alias("digits", 1, "1abc")
    with pytest.raises(InvalidInput, match="bad model name"):
        register_digits(registry, name="no spaces")
    with pytest.raises(InvalidInput, match="3 labels given, but the model scores 10"):
        registry.register(
            "x",
            b"...",
            signature=registry.version("digits").signature,
            framework="onnx",
            check={},
            labels=["a", "b", "c"],
        )
    with pytest.raises(InvalidInput, match="bad model reference"):
        parse_ref("digits:")


def test_corrupt_artifact_is_refused(registry: Registry) -> None:
    record = register_digits(registry)
    path = registry.artifacts.path(record.sha256)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CorruptArtifact, match="corrupt"):
        registry.artifact(record)


def test_export_writes_verified_bytes(registry: Registry, tmp_path: Path) -> None:
    register_digits(registry)
    registry.export("digits", None, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == digits_linear().onnx_bytes
    registry.export("digits", 1, tmp_path)
    assert (tmp_path / "digits-1.onnx").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    registry.export("digits", 1, tmp_path / "new" / "folder" / "model.onnx")  # folders made
    assert (tmp_path / "new" / "folder" / "model.onnx").read_bytes() == digits_linear().onnx_bytes
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match=r"cannot write .*model.onnx: File exists"):
        registry.export("digits", 1, tmp_path / "file" / "model.onnx")


def test_a_second_registry_on_the_same_database_sees_the_same_state(
    registry: Registry, tmp_path: Path
) -> None:
    register_digits(registry)
    other = Registry(registry.url, ArtifactStore(registry.artifacts.root))
    try:
        other.set_alias("digits", 1, "production")
        assert registry.version("digits").aliases == ("production",)
    finally:
        other.close()


def test_artifact_store_never_leaves_half_written_files(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = store.put(b"hello")
    assert store.get(sha) == b"hello"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha]
    with pytest.raises(NotFound):
        store.get("0" * 64)


def test_deploy_and_rollback_record_who_and_why(registry: Registry) -> None:
    for _ in range(3):
        register_digits(registry)
    assert registry.deploy("digits", 1, reason="first release") is None
    assert registry.deploy("digits", 3) == 1
    assert registry.rollback("digits", reason="bad accuracy") == (3, 1)
    assert registry.version("digits").number == 1
    assert registry.rollback("digits") == (1, 3)  # like `cd -`: back to the one before
    events = [(e.kind, e.version, e.from_version, e.reason) for e in registry.history("digits")[3:]]
    assert events == [
        ("deploy", 1, None, "first release"),
        ("deploy", 3, 1, ""),
        ("rollback", 1, 3, "bad accuracy"),
        ("rollback", 3, 1, ""),
    ]
    assert all(e.actor == registry.actor for e in registry.history("digits"))


def test_deploy_refuses_incompatible_inputs_unless_forced(registry: Registry) -> None:
    from shipyard.errors import Conflict
    from shipyard.signature import Signature, TensorSpec

    register_digits(registry)
    registry.deploy("digits", 1)
    wider = Signature((TensorSpec("input", "FP32", (-1, 65)),), (TensorSpec("logits", "FP32", (-1, 10)),))
    registry.register("digits", b"other", signature=wider, framework="onnx", check={})
    with pytest.raises(Conflict, match=r"input 'input' changes shape \[-1, 64\] -> \[-1, 65\]"):
        registry.deploy("digits", 2)
    assert registry.version("digits").number == 1
    registry.deploy("digits", 2, force=True)
    assert registry.version("digits").number == 2


def test_rollback_needs_a_previous_version(registry: Registry) -> None:
    from shipyard.errors import Conflict

    register_digits(registry)
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("digits")
