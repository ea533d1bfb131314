"""KServe: a ServingRuntime that runs shipyard for ONNX models, and an InferenceService that uses it.

KServe's storage initializer downloads the InferenceService's storageUri into /mnt/models, and the
runtime's arguments are templates filled from the InferenceService's metadata ({{.Name}}: its name).
So the container runs `shipyard k8s serve {{.Name}} --model-dir /mnt/models`: it registers the .onnx
file found there in a registry of its own and serves it under the InferenceService's name, on the
ports KServe's runtimes use (HTTP 8080, gRPC 9000), with the v2 protocol on both.
"""

from __future__ import annotations

from shipyard.k8s.manifests import Manifest, container_security, resources, threads_env
from shipyard.k8s.target import Target

RUNTIME = "shipyard"
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model
HTTP_PORT = 8080
GRPC_PORT = 9000
CONTAINER = "kserve-container"  # the name KServe gives the predictor's container


def serving_runtime(target: Target) -> Manifest:
    args = ["k8s", "serve", "{{.Name}}", "--model-dir", MODEL_DIR]
    args += ["--port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT)]
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": RUNTIME, "labels": {"app.kubernetes.io/name": "shipyard"}},
        "spec": {
            "annotations": {
                "prometheus.kserve.io/port": str(HTTP_PORT),
                "prometheus.kserve.io/path": "/metrics",
            },
            # chosen by name (the InferenceService's `runtime`), not in place of other ONNX runtimes
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [
                {
                    "name": CONTAINER,
                    "image": target.image,
                    "args": args,
                    # the registry the model is imported into lives and dies with the pod
                    "env": [{"name": "SHIPYARD_HOME", "value": "/tmp/shipyard"}, *threads_env(CONTAINER)],
                    "resources": resources(target),
                    "securityContext": container_security(),
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def inference_service(target: Target) -> Manifest:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": target.object_name},
        "spec": {
            "predictor": {
                "minReplicas": target.low,
                "maxReplicas": target.high,
                "model": {
                    "modelFormat": {"name": "onnx", "version": "1"},
                    "protocolVersion": "v2",
                    "runtime": RUNTIME,
                    "storageUri": target.model_uri,
                },
            }
        },
    }


def kserve_objects(target: Target) -> dict[str, Manifest]:
    """Each object by the file it is written to."""
    return {
        "servingruntime.yaml": serving_runtime(target),
        "inferenceservice.yaml": inference_service(target),
    }
