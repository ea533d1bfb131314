"""Write a target's manifests as YAML files: k8s/ for plain Kubernetes, kserve/ for KServe.

Each file starts with the command that wrote it, so that a change is made to the command and the
files are written again, never edited by hand into something no command gives.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from shipyard.k8s.kserve import kserve_objects
from shipyard.k8s.manifests import Manifest, kubernetes_objects
from shipyard.k8s.target import Target


def documents(target: Target) -> dict[str, Manifest]:
    """Every object, by its path under the output folder."""
    found = {f"k8s/{name}": obj for name, obj in kubernetes_objects(target).items()}
    found.update({f"kserve/{name}": obj for name, obj in kserve_objects(target).items()})
    return found


def to_yaml(target: Target, obj: Manifest) -> str:
    header = f"# Written by `{target.command()}`: change the command and write it again.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)


def write(target: Target, out: Path) -> list[Path]:
    """Write every file under `out` (folders made as needed), replacing what is there; the paths written."""
    written = []
    for relative, obj in documents(target).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_yaml(target, obj), encoding="utf-8")
        written.append(path)
    return written
