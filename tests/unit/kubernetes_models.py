"""Manifests checked against the object models of Kubernetes and KServe, as strictly as an API server
with `--validate=strict` checks them: unknown fields refused, required fields and types enforced.

Kubernetes objects go through the `kubernetes` package's models: each field is looked up in its class's
attribute map (an unknown one fails), and the object is then deserialized by
`kubernetes.client.ApiClient` with client-side validation on (a missing required field fails).

KServe objects are checked with jsonschema against the OpenAPI schemas of KServe's own
CustomResourceDefinitions (the `kserve` package cannot be installed beside our protobuf 7 pin), shipped
gzipped and unmodified in crds/:

    repository  https://github.com/kserve/kserve
    release     v0.20.0, commit 1fb781055dd1567164358233e1125142ca6ef1fe
    files       config/crd/full/serving.kserve.io_servingruntimes.yaml    (sha256 below, uncompressed)
                config/crd/full/serving.kserve.io_inferenceservices.yaml
    licence     Apache-2.0

A CRD's schema leaves objects open (the API server prunes unknown fields, or refuses them when strict):
every object schema that lists its properties is closed here (additionalProperties: false), as strict
validation does, and the object's metadata, which the CRD leaves as a bare object, goes through
Kubernetes' V1ObjectMeta.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).parent / "crds"
CRD_SHA256 = {
    "servingruntimes": "380a3e1e1444cef9b8b88819596692728868205a2147dc66423be469a4a7bbb1",
    "inferenceservices": "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
}
KUBERNETES_KINDS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}
KSERVE_KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): ("servingruntimes", "v1alpha1"),
    ("serving.kserve.io/v1beta1", "InferenceService"): ("inferenceservices", "v1beta1"),
}
SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}


class Invalid(AssertionError):
    """A manifest the API server would refuse."""


def validate(obj: dict[str, Any]) -> None:
    """Check one object of any kind written; Invalid says where it goes wrong."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in KUBERNETES_KINDS:
        validate_kubernetes(obj, KUBERNETES_KINDS[key])  # type: ignore[index]
    elif key in KSERVE_KINDS:
        validate_kserve(obj, *KSERVE_KINDS[key])  # type: ignore[index]
    else:
        raise Invalid(f"no model for apiVersion {key[0]!r}, kind {key[1]!r}")


def validate_kubernetes(obj: dict[str, Any], type_name: str) -> None:
    from kubernetes.client import ApiClient

    strict(obj, type_name, "")

    class Response:  # what ApiClient.deserialize reads: the body of an API response
        data = json.dumps(obj)

    try:
        ApiClient().deserialize(Response(), type_name)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"{type_name}: {exc}") from None


def strict(data: Any, type_name: str, where: str) -> None:
    """Walk `data` along the model class's declared types, refusing what no class declares."""
    import kubernetes.client.models as models

    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise Invalid(f"{where or '.'}: a list expected, got {data!r}")
        for i, item in enumerate(data):
            strict(item, type_name[5:-1], f"{where}[{i}]")
    elif type_name.startswith(("dict(", "dict[")):  # dict(str, V1X) in older clients, dict[str, V1X] now
        if not isinstance(data, dict):
            raise Invalid(f"{where}: a map expected, got {data!r}")
        value_type = type_name[5:-1].split(", ", 1)[1]
        for key, value in data.items():
            strict(value, value_type, f"{where}.{key}")
    elif type_name == "object":  # int-or-string and the like
        if not isinstance(data, int | str | dict):
            raise Invalid(f"{where}: {data!r}")
    elif type_name in SCALARS:
        if not isinstance(data, SCALARS[type_name]) or (type_name != "bool" and isinstance(data, bool)):
            raise Invalid(f"{where}: {type_name} expected, got {data!r}")
    else:
        klass = getattr(models, type_name)
        if not isinstance(data, dict):
            raise Invalid(f"{where}: a {type_name} object expected, got {data!r}")
        fields = {json_name: attr for attr, json_name in klass.attribute_map.items()}
        for key, value in data.items():
            if key not in fields:
                raise Invalid(f"{where}.{key}: unknown field of {type_name}")
            strict(value, klass.openapi_types[fields[key]], f"{where}.{key}")


def validate_kserve(obj: dict[str, Any], plural: str, version: str) -> None:
    from jsonschema import Draft7Validator

    strict(obj.get("metadata", {}), "V1ObjectMeta", "metadata")
    validator = Draft7Validator(crd_schema(plural, version))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        raise Invalid("; ".join(f"{'.'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in errors))


@cache
def crd_schema(plural: str, version: str) -> dict[str, Any]:
    path = CRDS / f"serving.kserve.io_{plural}.yaml.gz"
    raw = gzip.decompress(path.read_bytes())
    if hashlib.sha256(raw).hexdigest() != CRD_SHA256[plural]:
        raise Invalid(f"{path.name} is not the file of the KServe release named above")
    crd = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return closed(served["schema"]["openAPIV3Schema"])  # type: ignore[no-any-return]


def closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if (
        isinstance(out.get("properties"), dict)
        and out.get("type") == "object"
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out
