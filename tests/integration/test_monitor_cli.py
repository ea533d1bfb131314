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


def test_status_and_dashboard_rank_drifted_features_by_psi(tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path))
    register_digits(registry)
    registry.close()
    X, _ = digits_data()
    np.savez(tmp_path / "reference.npz", X=X[:1000])
    cli(tmp_path, "monitor", "reference", "digits", str(tmp_path / "reference.npz"))
    server = start_server(tmp_path, "--no-grpc")
    try:
        with httpx.Client(base_url=server.url) as client:
            for start in range(1000, 1400, 50):  # brighter digits: many pixels drift, by different amounts
                rows = np.clip(X[start : start + 50] + 4, 0, 16)
                body = {"inputs": [{"name": "input", "shape": [50, 64], "datatype": "FP32",
                                    "data": rows.ravel().tolist()}]}  # fmt: skip
                assert client.post("/v2/models/digits/infer", json=body).status_code == 200
            html = client.get("/dashboard/digits").text
        doc = json.loads(cli(tmp_path, "monitor", "status", "--server", server.url, "--json").stdout)
        status = cli(tmp_path, "monitor", "status", "digits", "--server", server.url).stdout
    finally:
        stop_server(server)
    drift = doc[0]["versions"][0]["drift"]
    psi = {f["name"]: f["psi"] for f in drift["features"]}
    drifted = drift["drifted"]
    assert drift["flagged"] and len(drifted) > 5
    assert drifted == sorted(drifted, key=lambda name: -psi[name])  # the server ranks them
    top = ", ".join(f"{name} {psi[name]:.2f}" for name in drifted[:5])
    line = f"by PSI: {top}, +{len(drifted) - 5} more"
    assert line in html  # the dashboard's drift tile
    assert f"DRIFT {line}" in status
