"""`shipyard serve`: load models from the registry and serve them over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shipyard.cli import serving_options as opts
from shipyard.cli.common import console, get_state
from shipyard.config import Settings

if TYPE_CHECKING:
    from shipyard.registry import Registry
    from shipyard.runtime import ModelManager
    from shipyard.server.assemble import Assembled, ServeSpec


def _setting(field: str, metavar: str, text: str, unset: str | None = None, **kwargs: Any) -> Any:
    """A server setting as an option: none unless given (on the command line or in SHIPYARD_<FIELD>),
    so that Settings decides; the default shown is Settings' own (`unset` says what none means)."""
    default = Settings.model_fields[field].default
    return typer.Option(
        None,
        metavar=metavar,
        envvar=f"SHIPYARD_{field.upper()}",
        show_default=unset or False if default is None else str(default),
        help=text,
        **kwargs,
    )


HOST = _setting("host", "HOST", "Address to listen on; 0.0.0.0 for every interface.")
PORT = _setting("port", "PORT", "HTTP port.")
GRPC_PORT = _setting("grpc_port", "PORT", "gRPC port (with --grpc).")
INTRA_OP_THREADS = _setting(
    "intra_op_threads", "N", "ONNX Runtime threads inside one operator; 0: ONNX Runtime decides."
)
INTER_OP_THREADS = _setting(
    "inter_op_threads", "N", "ONNX Runtime threads across operators; 0: ONNX Runtime decides."
)
ALIAS = _setting(
    "alias", "ALIAS", "Answer with the version this alias names (a model without it: its newest)."
)
MEMORY_BUDGET = _setting(
    "memory_budget_mb",
    "MB",
    "Memory the loaded versions may use: the least recently used idle one unloads to make room, and one "
    "not resident loads on its next request.",
    unset="no limit",
    min=1,
)
TLS_CERT = _setting("tls_cert", "FILE", "PEM certificate: serve HTTPS, and gRPC over TLS.")
TLS_KEY = _setting("tls_key", "FILE", "PEM private key of --tls-cert.")
NAMES = typer.Argument(
    None, metavar="NAME", help="Models to serve, any number (none: every registered model)."
)
GRPC = typer.Option(True, "--grpc/--no-grpc", help="Serve KServe v2 over gRPC as well.")
MAX_BODY_MB = typer.Option(
    None,
    metavar="MB",
    show_default="64",
    help="Largest request body, in MiB; a larger one gets 413 before it is read whole "
    "(SHIPYARD_MAX_BODY_BYTES sets the default in bytes).",
)
LOG_LEVEL = typer.Option(
    "warning",
    metavar="LEVEL",
    help="Server log level: critical, error, warning, info (adds uvicorn's start and stop lines), "
    "debug or trace.",
)
WORKERS = typer.Option(
    1, min=1, metavar="N", help="Server processes sharing the ports, each with its own sessions."
)
ACCESS_LOG = typer.Option(False, "--access-log/--no-access-log", help="Log every request, as uvicorn does.")


def serve(
    ctx: typer.Context,
    names: list[str] | None = NAMES,
    host: str | None = HOST,
    port: int | None = PORT,
    grpc_port: int | None = GRPC_PORT,
    grpc: bool = GRPC,
    intra_op_threads: int | None = INTRA_OP_THREADS,
    inter_op_threads: int | None = INTER_OP_THREADS,
    max_body_mb: float | None = MAX_BODY_MB,
    log_level: str = LOG_LEVEL,
    workers: int = WORKERS,
    batching: bool | None = opts.SERVE_BATCHING,
    max_batch_size: int | None = opts.SERVE_MAX_BATCH_SIZE,
    max_queue_delay_us: int | None = opts.SERVE_MAX_QUEUE_DELAY_US,
    max_queue_size: int | None = opts.SERVE_MAX_QUEUE_SIZE,
    instances: int | None = opts.SERVE_INSTANCES,
    max_in_flight: int | None = opts.SERVE_MAX_IN_FLIGHT,
    timeout_s: float | None = opts.SERVE_TIMEOUT_S,
    versions: str | None = opts.SERVE_VERSIONS,
    alias: str | None = ALIAS,
    memory_budget: int | None = MEMORY_BUDGET,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    access_log: bool = ACCESS_LOG,
) -> None:
    """Serve models over KServe v2 REST and gRPC, and the friendly /predict API.

    The serving options (--batching to --versions) are the defaults: a model's own settings (`shipyard
    model configure`) win; SHIPYARD_SERVING__MAX_BATCH_SIZE=64 and the like set them too.
    """
    from shipyard.server.assemble import ServeSpec, assemble
    from shipyard.server.transport import raise_open_file_limit

    st = get_state(ctx)
    serving = opts.merged(st.settings.serving.model_dump(), opts.serving_updates(locals()))
    settings = _settings(
        st.settings,
        host=host,
        port=port,
        grpc_port=grpc_port,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        max_body_bytes=int(max_body_mb * 1024 * 1024) if max_body_mb is not None else None,
        serving=serving,
        alias=alias,
        memory_budget_mb=memory_budget,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    http_socket = _take_ports(settings, grpc)
    spec = ServeSpec(settings=settings, names=names or None, grpc=grpc, workers=workers)
    limits = settings.transport
    raise_open_file_limit(limits.max_connections + limits.grpc_max_concurrent_rpcs + 256)
    assembled = assemble(spec)  # loads and warms up every model: errors stop us here, as one line
    _print_models(assembled.manager)
    http_socket.listen(2048)
    _print_listening(settings, grpc, workers, assembled.registry)
    _run(assembled, spec, http_socket, _server_options(settings, log_level, access_log))


def _settings(base: Settings, **flags: Any) -> Settings:
    """The server's settings: `base` (environment and file) under the flags given (None: not given)."""
    given = {k: v for k, v in flags.items() if v is not None}
    return opts.validated(Settings, {**base.model_dump(), **given}, "serve options")


def _print_models(manager: ModelManager) -> None:
    """Each model served: its versions (resident, or loaded on first use) and how it is served; then
    the versions that cannot serve, and why."""
    for name in manager.names:
        served = manager.served(name)
        versions = ", ".join(
            f"{v}" if v in served.versions else f"{v} (on first use)" for v in sorted(served.records)
        )
        s = served.serving
        how = f"batch <= {s.max_batch_size}" if s.batching else "no batching"
        console.print(
            f"serving {name} versions {versions} (default {served.default}; {how}, "
            f"{s.instances} instance{'s' if s.instances > 1 else ''}, queue {s.max_queue_size})"
        )
    for ref, why in manager.down().items():
        console.print(f"not serving {ref}: {why}")


def _print_listening(settings: Settings, grpc: bool, workers: int, registry: Registry) -> None:
    """Where the server listens; and, when the admin endpoints are off, why."""
    from shipyard.server.auth import is_loopback

    grpc_text = f", gRPC on {settings.host}:{settings.grpc_port}" if grpc and settings.grpc_port else ""
    plural = f" in {workers} worker processes" if workers > 1 else ""
    scheme = "https" if settings.tls_cert else "http"
    where = f"{scheme}://{settings.host}:{settings.port}"
    console.print(f"listening on {where}{grpc_text}{plural}  (docs: /docs)")
    admin_tokens = [t for t in registry.tokens() if "admin" in t.scopes]
    if not is_loopback(settings.host) and not settings.named_admin_tokens and not admin_tokens:
        console.print(
            "admin endpoints are off: this address is reachable beyond this machine and no admin token "
            "is set (SHIPYARD_ADMIN_TOKEN, or `shipyard token create NAME --scope admin`)"
        )


def _server_options(settings: Settings, log_level: str, access_log: bool) -> dict[str, Any]:
    """uvicorn's options."""
    from shipyard.server.transport import protocol_for

    limits = settings.transport
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "access_log": access_log,
        # asyncio's loop, not uvloop: under a flood of connects uvloop accepted about one connection
        # per loop turn (~120 a second measured with 1,920 pending), so a new client waited ~10 s behind
        # them; asyncio accepts them in batches, and served as many requests a second here (wrk, c=1-64)
        "loop": "asyncio",
        "http": protocol_for(limits),
        "timeout_keep_alive": limits.keep_alive_s,
        "ssl_certfile": settings.tls_cert,
        "ssl_keyfile": settings.tls_key,
    }


def _run(
    assembled: Assembled, spec: ServeSpec, http_socket: socket.socket, server_options: dict[str, Any]
) -> None:
    """Serve until interrupted: here, on `http_socket`; or in worker processes, each loading its own
    sessions from the spec."""
    import os
    import tempfile

    import uvicorn

    from shipyard.monitor.metrics import MULTIPROCESS_ENV
    from shipyard.server.assemble import SPEC_ENV

    manager = assembled.manager
    if spec.workers > 1:
        http_socket.close()  # uvicorn binds it again before starting the workers
        manager.unload_all()  # each worker loads its own sessions
        os.environ[SPEC_ENV] = spec.model_dump_json()
        # every worker writes its metrics to files here, and /metrics in any of them sums them all
        os.environ.setdefault(MULTIPROCESS_ENV, tempfile.mkdtemp(prefix="shipyard-metrics-"))
        app = "shipyard.server.assemble:app_from_env"
        uvicorn.run(app, factory=True, workers=spec.workers, **server_options)
        return
    try:
        uvicorn.Server(uvicorn.Config(assembled.app, **server_options)).run(sockets=[http_socket])
    except KeyboardInterrupt:
        pass
    finally:
        manager.unload_all()


def _take_ports(settings: Settings, grpc: bool) -> socket.socket:
    """The HTTP port, taken now (refusing connections until the models are loaded), so that the
    listening line is true when it is printed: a client may connect the moment it reads it. The gRPC
    port is only checked: the gRPC server binds it itself."""
    http_socket = _bind(settings.host, settings.port, "--port")
    if grpc and settings.grpc_port:
        _port_free(settings.host, settings.grpc_port, "--grpc-port")
    return http_socket


def _bind(host: str, port: int, flag: str) -> socket.socket:
    """Take the port, or say in one line that it is taken, rather than as a start-up traceback."""
    from shipyard.errors import Unavailable

    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every answer written in two parts waited ~40 ms for a delayed ACK
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    # as uvicorn binds: a port left in TIME_WAIT by a killed server is free to take
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port} ({exc.strerror}): choose another {flag}") from None
    return sock


def _port_free(host: str, port: int, flag: str) -> None:
    _bind(host, port, flag).close()
