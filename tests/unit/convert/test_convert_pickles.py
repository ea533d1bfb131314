"""Untrusted model files: pickles are scanned without running them and loaded only on trust;
skops files load without trust when they hold only scikit-learn, numpy and scipy types."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from shipyard.convert import from_sklearn_file
from shipyard.errors import ConversionFailed


class Payload:
    """What an attacker pickles: unpickling calls `run(*args)`, here creating a marker file."""

    def __init__(self, run: Any, *args: Any) -> None:
        self.run, self.args = run, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.run, self.args


class Provenance:
    """Metadata a user attached to a model: a type of their own, which skops does not trust."""

    def __init__(self, source: str) -> None:
        self.source = source


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def _payloads(marker: Path) -> dict[str, Payload]:
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize(("kind", "imports"), [("os.system", "posix.system"), ("exec", "builtins.exec")])
@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_a_malicious_pickle_is_refused_even_when_trusted(
    marker: Path, tmp_path: Path, trusted: bool, kind: str, imports: str, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    payload = _payloads(marker)[kind]
    if suffix == ".joblib":
        joblib.dump(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))

    expected = f"refused even with --trust: loading it would call {re.escape(imports)}"
    with pytest.raises(ConversionFailed, match=expected):
        from_sklearn_file(path, trusted=trusted)
    assert not marker.exists()


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "lzma", "xz"])
def test_a_payload_behind_joblib_arrays_is_seen_compressed_or_not(
    marker: Path, tmp_path: Path, compress: int | str
) -> None:
    """joblib writes array bytes inside the pickle stream; a plain disassembler stops at them."""
    path = tmp_path / "model.joblib"
    model = {"weights": np.arange(1000.0), "then": _payloads(marker)["os.system"]}
    joblib.dump(model, path, compress=compress if isinstance(compress, int) else (compress, 3))

    with pytest.raises(ConversionFailed, match=r"would call posix\.system"):
        from_sklearn_file(path, trusted=True)
    assert not marker.exists()


def test_a_payload_inside_an_array_of_objects_is_seen(marker: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"objects": np.array([1, _payloads(marker)["exec"]], dtype=object)}, path)

    with pytest.raises(ConversionFailed, match=r"would call builtins\.exec"):
        from_sklearn_file(path, trusted=True)
    assert not marker.exists()


def test_a_joblib_file_is_refused_without_trust_and_names_skops(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path)

    with pytest.raises(ConversionFailed) as info:
        from_sklearn_file(path)

    message = str(info.value)
    assert "\n" not in message
    assert "loading it runs code from the file" in message and "--trust" in message
    assert 'skops.io.dump(model, "model.skops")' in message


@pytest.mark.parametrize("compress", [0, 3])
def test_a_trusted_joblib_file_converts_and_reports_its_imports(
    pipeline: Pipeline, tmp_path: Path, compress: int
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path, compress=compress)
    reports: list[str] = []

    converted = from_sklearn_file(path, trusted=True, report=reports.append)

    assert converted.labels == [str(d) for d in range(10)] and converted.check.passed
    (report,) = reports
    assert "sklearn.linear_model._logistic.LogisticRegression" in report
    assert "sklearn.pipeline.Pipeline" in report


def test_a_compression_the_scan_cannot_read_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x04\x22\x4d\x18" + bytes(64))  # the lz4 frame magic joblib looks for

    with pytest.raises(ConversionFailed, match=r"cannot be scanned before loading .*compressed with lz4"):
        from_sklearn_file(path, trusted=True)


def test_a_skops_file_converts_without_trust(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(pipeline, path)

    converted = from_sklearn_file(path)

    assert converted.labels == [str(d) for d in range(10)] and converted.check.passed


def test_scikit_learn_types_skops_reports_are_trusted(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "forest.skops"
    skops.io.dump(RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(*digits), path)
    assert skops.io.get_untrusted_types(file=path) == ["sklearn.tree._tree.Tree"]
    reports: list[str] = []

    assert from_sklearn_file(path, report=reports.append).check.passed
    assert reports == []


def test_a_skops_file_with_a_custom_function_is_refused(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "model.skops"
    model = make_pipeline(FunctionTransformer(double), LogisticRegression(max_iter=500)).fit(*digits)
    skops.io.dump(model, path)

    name = re.escape(f"{double.__module__}.double")
    with pytest.raises(ConversionFailed, match=f"types outside scikit-learn, numpy and scipy.*: {name};"):
        from_sklearn_file(path)


def test_a_skops_file_with_another_type_is_refused_and_loads_when_trusted(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "model.skops"
    pipeline.provenance_ = Provenance("digits notebook")
    try:
        skops.io.dump(pipeline, path)
    finally:
        del pipeline.provenance_
    name = f"{Provenance.__module__}.Provenance"

    with pytest.raises(ConversionFailed, match=f"{re.escape(name)}; pass --trust"):
        from_sklearn_file(path)
    reports: list[str] = []
    converted = from_sklearn_file(path, trusted=True, report=reports.append)

    assert converted.check.passed
    assert reports == [f"model.skops loads the types {name}; loading them because it is trusted"]
