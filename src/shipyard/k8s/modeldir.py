"""A model folder as KServe's storage initializer leaves it (/mnt/models), made into a registry entry.

The folder holds one .onnx file, at any depth (a single-file storageUri lands as /mnt/models/NAME.onnx,
a folder keeps its layout) and, optionally, a labels.txt beside it (one class name per line, or a JSON
list) for the friendly /predict API. Registering it again with the same bytes and labels reuses the
version, so that a container that restarts on a persistent SHIPYARD_HOME adds nothing.
"""

from __future__ import annotations

from pathlib import Path

from shipyard.errors import InvalidInput, NotFound
from shipyard.importing import import_file, read_labels
from shipyard.registry import Registry, VersionRecord

LABELS = "labels.txt"


def onnx_file(folder: Path) -> Path:
    """The one .onnx file under `folder`; NotFound or InvalidInput naming what is there instead."""
    if not folder.is_dir():
        raise NotFound(f"no model folder {folder}: KServe mounts the model at /mnt/models")
    found = sorted(p for p in folder.rglob("*.onnx") if p.is_file())
    if not found:
        raise NotFound(f"no .onnx file in {folder}: the storageUri must hold the model's ONNX file")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in found)
        raise InvalidInput(f"{len(found)} .onnx files in {folder} ({names}): the storageUri must hold one")
    return found[0]


def import_model_dir(folder: Path, name: str, registry: Registry) -> VersionRecord:
    """Register the folder's model as `name` (its current version when the bytes and labels are the same)."""
    path = onnx_file(folder)
    labels_file = path.parent / LABELS
    labels = read_labels(labels_file) if labels_file.is_file() else None
    return import_file(path, name=name, framework="onnx", labels=labels, registry=registry)
