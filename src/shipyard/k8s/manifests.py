"""The Kubernetes objects that serve one model: Deployment, Service, HorizontalPodAutoscaler and
PodDisruptionBudget, as plain dicts (what `kubectl apply` reads once dumped to YAML).

Every replica serves the same registry, so the registry must be shared: PostgreSQL and object storage,
named by the SHIPYARD_* variables of one Secret (SHIPYARD_DATABASE_URL, SHIPYARD_ARTIFACTS and the
storage's credentials). The pod's own SHIPYARD_HOME holds only its prediction log, on an emptyDir.
"""

from __future__ import annotations

from typing import Any

from shipyard.k8s.target import GRPC_PORT, HTTP_PORT, Target

Manifest = dict[str, Any]

READY = "/v2/health/ready"
LIVE = "/v2/health/live"
UID = 10001  # the image's user (deploy/Dockerfile); numeric, so that runAsNonRoot can be checked


def labels(target: Target) -> dict[str, str]:
    """The labels that select the model's pods (the Deployment, Service and budget agree on them)."""
    return {"app.kubernetes.io/name": "shipyard", "app.kubernetes.io/instance": target.object_name}


def metadata(target: Target, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or target.app,
        "labels": {**labels(target), "app.kubernetes.io/component": "server"},
    }


def container_security() -> dict[str, Any]:
    """Non-root, nothing to escalate to, and a read-only root: the server writes only under /data and /tmp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(target: Target) -> dict[str, Any]:
    """CPU requested (the autoscaler's yardstick) but not capped, which would only throttle latency;
    memory requested and capped at the same figure, so that the pod is never the first one evicted."""
    return {
        "requests": {"cpu": target.cpu, "memory": target.memory},
        "limits": {"memory": target.memory},
    }


def threads_env(container: str) -> list[dict[str, Any]]:
    """ONNX Runtime sizes its thread pool from the node's cores unless told: tell it the pod's share
    (the CPU request rounded up), which follows an edit of the request without a new render."""
    source = {"resourceFieldRef": {"containerName": container, "resource": "requests.cpu", "divisor": "1"}}
    return [{"name": "SHIPYARD_INTRA_OP_THREADS", "valueFrom": source}]


def probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(target: Target) -> Manifest:
    container = {
        "name": "shipyard",
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", target.name],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"secretRef": {"name": target.registry_secret}}],
        "env": threads_env("shipyard"),
        "resources": resources(target),
        # the port answers once every version is loaded and warmed up: give that time before liveness
        "startupProbe": probe(LIVE, "http", period=5, failures=60),
        "readinessProbe": probe(READY, "http", period=5, failures=2),
        "livenessProbe": probe(LIVE, "http", period=10, failures=3),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "metadata": {
            "labels": {**labels(target), "app.kubernetes.io/component": "server"},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HTTP_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "containers": [container],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            # replicas on different nodes where there are nodes enough: one node lost is not the model lost
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": labels(target)},
                }
            ],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(target),
        "spec": {
            "replicas": target.replicas,
            "selector": {"matchLabels": labels(target)},
            # a new pod serves before an old one goes: no dip in capacity during an upgrade
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod,
        },
    }


def service(target: Target) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(target),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(target),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def autoscaler(target: Target) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(target),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.app},
            "minReplicas": target.low,
            "maxReplicas": target.high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": target.target_cpu},
                    },
                }
            ],
        },
    }


def disruption_budget(target: Target) -> Manifest:
    """A drain or an upgrade of the nodes takes the model's pods one at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(target),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(target)}},
    }


def kubernetes_objects(target: Target) -> dict[str, Manifest]:
    """Each object by the file it is written to."""
    return {
        "deployment.yaml": deployment(target),
        "service.yaml": service(target),
        "hpa.yaml": autoscaler(target),
        "pdb.yaml": disruption_budget(target),
    }
