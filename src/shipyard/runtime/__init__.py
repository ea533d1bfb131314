"""Running models: ONNX Runtime sessions (runners) and the manager that loads and serves versions."""

from shipyard.runtime.loading import LoadedVersion
from shipyard.runtime.manager import ModelManager
from shipyard.runtime.session import Runner, RunnerOptions

__all__ = ["LoadedVersion", "ModelManager", "Runner", "RunnerOptions"]
