"""`shipyard model import` on untrusted files, as a user runs it: a malicious pickle never runs, a
pickle needs --trust, and a .skops file needs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
import skops.io
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression


class Payload:
    """Unpickling it runs a shell command that creates a marker file."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def shipyard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "shipyard", "--home", str(home), "model", "import", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(*load_digits(return_X_y=True))


def test_a_malicious_joblib_file_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.joblib"
    joblib.dump(Payload(f"touch {marker}"), path)

    for trust in ([], ["--trust"]):
        error = one_line_error(shipyard(tmp_path / "home", str(path), "--name", "evil", *trust))
        assert "refused even with --trust" in error and "posix.system" in error
    assert not marker.exists()


def test_a_joblib_file_needs_trust_and_a_skops_file_does_not(
    model: LogisticRegression, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    joblib.dump(model, tmp_path / "logreg.joblib")
    skops.io.dump(model, tmp_path / "logreg.skops")

    error = one_line_error(shipyard(home, str(tmp_path / "logreg.joblib"), "--name", "digits"))
    assert "--trust" in error and "skops.io.dump" in error

    trusted = shipyard(home, str(tmp_path / "logreg.joblib"), "--name", "digits", "--trust")
    assert trusted.returncode == 0, trusted.stderr
    assert "logreg.joblib imports" in trusted.stdout and "LogisticRegression" in trusted.stdout
    assert "imported digits:1 from sklearn" in trusted.stdout

    same = shipyard(home, str(tmp_path / "logreg.skops"), "--name", "digits")
    assert same.returncode == 0, same.stderr
    assert "digits:1 already holds this model" in same.stdout  # the same model, saved another way
    safe = shipyard(home, str(tmp_path / "logreg.skops"), "--name", "digits", "--new-version")
    assert safe.returncode == 0, safe.stderr
    assert "imported digits:2 from sklearn" in safe.stdout
