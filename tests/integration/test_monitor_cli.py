"""`shipyard monitor` as a user runs it: a reference profile, a server's status, the prediction log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import shipyard_command, start_server, stop_server
from tests.models import digits_data


def cli(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    wide = {**os.environ, "COLUMNS": "200"}  # tables as a terminal shows them, not squeezed into 80
    result = subprocess.run(
        shipyard_command(home, *args), capture_output=True, text=True, timeout=120, env=wide
    )
    assert (result.returncode == 0) == ok, result.stderr
    return result


def test_reference_status_and_log(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    X, _ = digits_data()
    np.savez(tmp_path / "reference.npz", X=X[:1000])
    out = cli(tmp_path, "monitor", "reference", "digits", str(tmp_path / "reference.npz")).stdout
    assert "reference of digits:1: 1000 rows of reference.npz, 64 features" in out
    assert "reference.npz" in cli(tmp_path, "model", "history", "digits").stdout
    bad = cli(tmp_path, "monitor", "reference", "digits", str(tmp_path / "nope.npz"), ok=False)
    assert "nope.npz" in bad.stderr and "Traceback" not in bad.stderr

    server = start_server(tmp_path, "--no-grpc")
    try:
        with httpx.Client(base_url=server.url) as client:
            for row in X[1000:1100]:
                assert (
                    client.post("/v1/models/digits/predict", json={"input": row.tolist()}).status_code == 200
                )
        status = cli(tmp_path, "monitor", "status", "digits", "--server", server.url).stdout
        assert "digits" in status and "warming up (100 rows)" in status  # drift is judged from 300 rows
        doc = json.loads(cli(tmp_path, "monitor", "status", "--server", server.url, "--json").stdout)
        assert doc[0]["model"] == "digits" and doc[0]["versions"][0]["requests"] == 100
    finally:
        stop_server(server)  # the log is flushed on shutdown
    logged = cli(tmp_path, "monitor", "log", "digits", "--since", "1h", "--limit", "5").stdout
    assert "100 records since 1h; showing the last 5" in logged
    rows = json.loads(cli(tmp_path, "monitor", "log", "digits", "--json", "--limit", "100").stdout)
    assert len(rows) == 100 and {r["class"] for r in rows} <= {str(i) for i in range(10)}
    unreachable = cli(tmp_path, "monitor", "status", "--server", "http://127.0.0.1:9", ok=False)
    assert unreachable.stderr.startswith("error: cannot reach the server")
    assert "invalid time '5x'" in cli(tmp_path, "monitor", "log", "digits", "--since", "5x", ok=False).stderr
