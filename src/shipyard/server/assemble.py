"""Putting a server together: registry -> model manager -> data plane -> ASGI app (+ gRPC beside it).

One function for both ways of running: in the CLI's own process, and in each of `--workers N`
processes, which uvicorn starts with `app_from_env` and which each load their own sessions.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shipyard.config import Settings
from shipyard.dataplane import DataPlane
from shipyard.errors import InvalidInput
from shipyard.monitor.live import Monitor
from shipyard.registry import Registry
from shipyard.runtime import ModelManager, RunnerOptions
from shipyard.server.auth import Auth, is_loopback
from shipyard.server.http import create_app
from shipyard.server.transport import KeepErrorsQuiet

SPEC_ENV = "SHIPYARD_SERVE_SPEC"


class ServeSpec(BaseModel):
    """Everything a server process needs to build itself; travels to workers as JSON."""

    settings: Settings
    names: list[str] | None = None
    grpc: bool = True
    workers: int = 1


@dataclass
class Assembled:
    app: KeepErrorsQuiet
    manager: ModelManager
    registry: Registry


def assemble(spec: ServeSpec) -> Assembled:
    """Load (verify, warm up) the models and build the app; errors surface here, before serving."""
    settings = spec.settings
    registry = Registry.open(settings)
    monitor = Monitor(settings.monitor, str(settings.predictions_dir)) if settings.monitor.enabled else None
    manager = ModelManager(
        registry,
        RunnerOptions(settings.intra_op_threads, settings.inter_op_threads, settings.providers),
        settings.serving,
        watch_interval_s=settings.watch_interval_s,
        alias=settings.alias,
        memory_budget_mb=settings.memory_budget_mb,
        observer=monitor.version if monitor else None,
    )
    manager.load(spec.names or None)
    dataplane = DataPlane(manager, monitor)
    grpc_port = settings.grpc_port if spec.grpc else None

    auth = Auth(settings.named_admin_tokens, loopback=is_loopback(settings.host))
    auth.update(registry.tokens())
    tls = tls_pair(settings)

    def also_serve() -> contextlib.AbstractAsyncContextManager[Any]:
        from shipyard.server.grpc import grpc_server

        assert grpc_port is not None
        return grpc_server(
            dataplane,
            settings.host,
            grpc_port,
            settings.max_body_bytes,
            reuse_port=spec.workers > 1,
            auth=auth,
            limits=settings.transport,
            tls=tls,
        )

    app = create_app(
        dataplane,
        max_body_bytes=settings.max_body_bytes,
        also_serve=also_serve if grpc_port is not None else None,
        auth=auth,
        tokens=registry.tokens,
        tokens_interval_s=settings.watch_interval_s or 1.0,  # revocations are followed regardless
    )
    # Everything built so far (imports, ORM, sessions: ~135k objects) lives as long as the server.
    # Left in the collector, each full collection rescanned it for ~90 ms with the loop stopped,
    # which was the whole p99 tail at concurrency 64 (bench/, gc.callbacks timings); frozen, ~3 ms.
    gc.collect()
    gc.freeze()
    return Assembled(app, manager, registry)


def tls_pair(settings: Settings) -> tuple[bytes, bytes] | None:
    """(certificate, key) in PEM when TLS is on; unreadable files are one clear error."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return settings.tls_cert.read_bytes(), settings.tls_key.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS certificate or key: {exc.strerror}") from None


def app_from_env() -> KeepErrorsQuiet:
    """uvicorn's factory in each worker process."""
    return assemble(ServeSpec.model_validate_json(os.environ[SPEC_ENV])).app
