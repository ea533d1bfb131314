"""The model manager: which versions are loaded, and which one answers a request.

Loading verifies the artifact against its hash, builds a runner and warms it up with one request, so a
version counts as ready only once it has answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from shipyard.errors import NotFound
from shipyard.protocol.datatypes import numpy_dtype
from shipyard.registry import Registry, VersionRecord
from shipyard.runtime.session import Runner, RunnerOptions
from shipyard.signature import Signature

log = logging.getLogger(__name__)


@dataclass
class LoadedVersion:
    record: VersionRecord
    runner: Runner

    @property
    def name(self) -> str:
        return self.record.model

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def signature(self) -> Signature:
        return self.record.signature


@dataclass
class ServedModel:
    name: str
    default: int
    versions: dict[int, LoadedVersion]


def warmup_inputs(signature: Signature) -> dict[str, np.ndarray]:
    """A batch of one of zeros (empty strings for BYTES): enough to touch every kernel once."""
    inputs = {}
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        dtype = numpy_dtype(spec.datatype)
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, "", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


class ModelManager:
    def __init__(self, registry: Registry, options: RunnerOptions) -> None:
        self._registry = registry
        self._options = options
        self._models: dict[str, ServedModel] = {}

    def load(self, names: Iterable[str] | None = None) -> None:
        """Load every version of the named models (all registered models when None)."""
        wanted = list(names) if names else [m.name for m in self._registry.models()]
        if not wanted:
            raise NotFound("no models are registered: import one with `shipyard model import`")
        for name in wanted:
            default = self._registry.version(name).number
            versions = {}
            for record in self._registry.versions(name):
                versions[record.number] = self._load_version(record)
            self._models[name] = ServedModel(name, default, versions)
            log.info("serving %s versions %s (default %s)", name, list(versions), default)

    def _load_version(self, record: VersionRecord) -> LoadedVersion:
        runner = Runner(record.ref, self._registry.artifact(record), self._options)
        runner.load()
        runner.run_sync(warmup_inputs(record.signature))
        return LoadedVersion(record, runner)

    def unload_all(self) -> None:
        for model in self._models.values():
            for version in model.versions.values():
                version.runner.unload()
        self._models.clear()

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def served(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(f"model {name!r} is not served here") from None

    def get(self, name: str, version: str | int | None = None) -> LoadedVersion:
        """The version that answers for `name` (the default one when `version` is None)."""
        model = self.served(name)
        if version is None or version == "":
            return model.versions[model.default]
        text = str(version)
        if not text.isdigit():
            raise NotFound(f"model {name!r} has no version {text!r}: versions are numbers")
        try:
            return model.versions[int(text)]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {text} loaded") from None

    def ready(self, name: str | None = None) -> bool:
        if name is None:
            return bool(self._models)
        return name in self._models
