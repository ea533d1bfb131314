"""`shipyard k8s render`: the manifests it writes, checked against Kubernetes' and KServe's object
models, and the committed deploy/k8s and deploy/kserve files being what it writes for the demo model."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.errors import InvalidInput
from shipyard.k8s import Target, documents, write
from tests.unit.kubernetes_models import Invalid, validate

ROOT = Path(__file__).resolve().parents[2]
DEMO = Target("digits", replicas=2)  # what deploy/ holds: `shipyard k8s render digits --replicas 2`
CUSTOM = Target(
    "Fraud_Model.v2",
    replicas=3,
    image="registry.example.com/shipyard:1.2",
    min_replicas=2,
    max_replicas=10,
    cpu="500m",
    memory="2Gi",
    target_cpu=60,
    registry_secret="prod-registry",
    storage_uri="gs://models/fraud",
)


def by_kind(target: Target) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in documents(target).values()}


def test_the_committed_manifests_are_what_render_writes_for_the_demo_model(tmp_path: Path) -> None:
    written = write(DEMO, tmp_path)
    committed = sorted(p.relative_to(ROOT / "deploy") for p in (ROOT / "deploy").glob("k*/*.yaml"))
    assert committed == sorted(p.relative_to(tmp_path) for p in written)
    for path in committed:
        assert (ROOT / "deploy" / path).read_text() == (tmp_path / path).read_text(), (
            f"deploy/{path} differs from what `{DEMO.command()}` writes: run it again"
        )


@pytest.mark.parametrize("target", [DEMO, CUSTOM], ids=["demo", "custom"])
def test_every_manifest_is_a_valid_kubernetes_or_kserve_object(target: Target, tmp_path: Path) -> None:
    for path in write(target, tmp_path):
        text = path.read_text()
        assert text.startswith(f"# Written by `{target.command()}`")
        validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("kind", "change", "problem"),
    [
        (
            "Deployment",
            lambda o: o["spec"].update(replica=2),
            "spec.replica: unknown field of V1DeploymentSpec",
        ),
        ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("name"), "`name`"),
        ("Service", lambda o: o["spec"]["ports"][0].update(port="http"), "int expected"),
        ("HorizontalPodAutoscaler", lambda o: o["spec"].pop("maxReplicas"), "max_replicas"),
        ("ServingRuntime", lambda o: o["spec"].update(protocolVersion=["v2"]), "protocolVersion"),
        ("ServingRuntime", lambda o: o["metadata"].update(label={}), "metadata.label: unknown field"),
        (
            "InferenceService",
            lambda o: o["spec"]["predictor"]["model"].update(storageURI="s3://m"),
            "storageURI",
        ),
        ("InferenceService", lambda o: o["spec"]["predictor"].update(minReplicas="1"), "is not of type"),
    ],
)
def test_the_validation_refuses_what_an_api_server_refuses(kind: str, change: Any, problem: str) -> None:
    obj = copy.deepcopy(by_kind(DEMO)[kind])
    change(obj)
    with pytest.raises(Invalid) as caught:
        validate(obj)
    assert problem in str(caught.value)


def test_the_objects_agree_with_one_another() -> None:
    objs = by_kind(CUSTOM)
    deployment, service = objs["Deployment"], objs["Service"]
    hpa, pdb = objs["HorizontalPodAutoscaler"], objs["PodDisruptionBudget"]
    assert {o["metadata"]["name"] for o in (deployment, service, hpa, pdb)} == {"shipyard-fraud-model-v2"}
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector == pdb["spec"]["selector"]["matchLabels"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["serve", "Fraud_Model.v2"]  # the registry's name, not the object's
    assert container["image"] == "registry.example.com/shipyard:1.2"
    assert container["envFrom"] == [{"secretRef": {"name": "prod-registry"}}]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert container["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["replicas"] == 3
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shipyard-fraud-model-v2",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_the_kserve_runtime_serves_onnx_over_v2_on_http_and_grpc() -> None:
    objs = by_kind(CUSTOM)
    runtime, service = objs["ServingRuntime"], objs["InferenceService"]
    spec = runtime["spec"]
    assert [f["name"] for f in spec["supportedModelFormats"]] == ["onnx"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["args"] == [
        "k8s", "serve", "{{.Name}}", "--model-dir", "/mnt/models", "--port", "8080", "--grpc-port", "9000"
    ]  # fmt: skip
    predictor = service["spec"]["predictor"]
    assert service["metadata"]["name"] == "fraud-model-v2"
    assert predictor["model"]["runtime"] == runtime["metadata"]["name"]
    assert predictor["model"]["modelFormat"]["name"] == "onnx"
    assert predictor["model"]["storageUri"] == "gs://models/fraud"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 10)


def test_the_header_names_the_command_with_the_options_given() -> None:
    assert DEMO.command() == "shipyard k8s render digits --replicas 2"
    assert CUSTOM.command() == (
        "shipyard k8s render Fraud_Model.v2 --replicas 3 --image registry.example.com/shipyard:1.2 "
        "--min-replicas 2 --max-replicas 10 --cpu 500m --memory 2Gi --target-cpu 60 "
        "--registry-secret prod-registry --storage-uri gs://models/fraud"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "bad model name"),
        ({"replicas": 0}, "--replicas must be at least 1"),
        ({"min_replicas": 3}, "--min-replicas (3) <= --replicas (2)"),
        ({"max_replicas": 1}, "<= --max-replicas (1)"),
        ({"cpu": "two"}, "--cpu 'two' is no Kubernetes quantity"),
        ({"memory": "0"}, "--memory '0' is no Kubernetes quantity"),
        ({"target_cpu": 0}, "--target-cpu is a percentage of the CPU request, at least 1, not 0"),
        ({"registry_secret": "Prod_Secret"}, "--registry-secret 'Prod_Secret'"),
        ({"image": "a b"}, "--image 'a b'"),
        ({"storage_uri": "models/digits"}, "needs a scheme"),
    ],
)
def test_a_bad_request_is_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Target(**{"name": "digits", "replicas": 2, **kwargs})
    assert message in caught.value.message and "\n" not in caught.value.message


def test_the_command_writes_the_files_and_says_so(tmp_path: Path) -> None:
    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "shipyard", "--home", str(tmp_path / "home"), "k8s", "render", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    done = shipyard("digits", "--replicas", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote deploy/{p}" for p in documents(DEMO)]
    assert (tmp_path / "deploy/k8s/deployment.yaml").read_text() == (
        ROOT / "deploy/k8s/deployment.yaml"
    ).read_text()

    refused = shipyard("digits", "--replicas", "2", "--max-replicas", "1", "--out", "elsewhere")
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: replicas must satisfy 1 <= --min-replicas (2) <= --replicas (2) <= --max-replicas (1)\n"
    )
    assert not (tmp_path / "elsewhere").exists()
