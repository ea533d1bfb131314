"""Kubernetes and KServe: the manifests that run a model there, and the KServe runtime's start-up.

    target.py    what is asked for (model, replicas, image, resources), checked once
    manifests.py Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget (plain dicts)
    kserve.py    ServingRuntime and InferenceService (plain dicts)
    render.py    the YAML files `shipyard k8s render` writes
    modeldir.py  the model folder KServe mounts, registered so that `shipyard serve` can serve it

Building manifests does no I/O and needs no Kubernetes client: the objects are plain data.
"""

from shipyard.k8s.render import documents, write
from shipyard.k8s.target import Target

__all__ = ["Target", "documents", "write"]
