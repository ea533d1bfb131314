"""Running models: ONNX Runtime sessions (runners) and the manager that loads and serves versions."""

from shipyard.runtime.manager import LoadedVersion, ModelManager
from shipyard.runtime.session import Runner, RunnerOptions

__all__ = ["LoadedVersion", "ModelManager", "Runner", "RunnerOptions"]
