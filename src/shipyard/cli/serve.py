"""`shipyard serve`: load models from the registry and serve them over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shipyard.cli import serving_options as opts
from shipyard.cli.common import console, get_state
from shipyard.config import Settings
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.registry import Registry
    from shipyard.server.serving import Server, ServeSpec


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
    "intra_op_threads",
    "N",
    "ONNX Runtime threads inside one operator; 0: one for a model run on the event loop, else ONNX "
    "Runtime decides.",
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


def serve(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(
        None, metavar="NAME", help="Models to serve, any number (none: every registered model)."
    ),
    host: str | None = HOST,
    port: int | None = PORT,
    grpc_port: int | None = GRPC_PORT,
    grpc: bool = typer.Option(True, "--grpc/--no-grpc", help="Serve KServe v2 over gRPC as well."),
    intra_op_threads: int | None = INTRA_OP_THREADS,
    inter_op_threads: int | None = INTER_OP_THREADS,
    max_body_mb: float | None = typer.Option(
        None,
        metavar="MB",
        show_default="64",
        help="Largest request body, in MiB; a larger one gets 413 before it is read whole "
        "(SHIPYARD_MAX_BODY_BYTES sets the default in bytes).",
    ),
    log_level: str = typer.Option(
        "warning",
        metavar="LEVEL",
        help="Server log level: critical, error, warning, info (adds uvicorn's start and stop lines), "
        "debug or trace.",
    ),
    workers: int = typer.Option(
        1, min=1, metavar="N", help="Server processes sharing the ports, each with its own sessions."
    ),
    batching: bool | None = opts.SERVE_BATCHING,
    max_batch_size: int | None = opts.SERVE_MAX_BATCH_SIZE,
    max_queue_delay_us: int | None = opts.SERVE_MAX_QUEUE_DELAY_US,
    max_queue_size: int | None = opts.SERVE_MAX_QUEUE_SIZE,
    instances: int | None = opts.SERVE_INSTANCES,
    execution: str | None = opts.SERVE_EXECUTION,
    max_in_flight: int | None = opts.SERVE_MAX_IN_FLIGHT,
    timeout_s: float | None = opts.SERVE_TIMEOUT_S,
    versions: str | None = opts.SERVE_VERSIONS,
    alias: str | None = ALIAS,
    memory_budget: int | None = MEMORY_BUDGET,
    tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY,
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request, as uvicorn does."
    ),
    engine: str = typer.Option(
        "local",
        metavar="ENGINE",
        help="local: this machine's processes (--workers); ray: Ray Serve replicas, each a whole server, "
        "sharing --port and --grpc-port on their node (pip install 'shipyard[ray]').",
    ),
    address: str | None = typer.Option(
        None,
        metavar="ADDRESS",
        help="With --engine ray: the cluster (auto, or ray://HOST:10001); none starts one here.",
    ),
    replicas: int | None = typer.Option(
        None, min=1, metavar="N", help="With --engine ray: this many replicas.", show_default="1"
    ),
    autoscale: str | None = typer.Option(
        None,
        metavar="MIN:MAX[:TARGET]",
        help="With --engine ray: between MIN and MAX replicas, each holding about TARGET requests in "
        "flight (default 32).",
    ),
    replica_cpus: float = typer.Option(
        1.0, min=0.01, metavar="CPUS", help="With --engine ray: Ray CPUs each replica takes."
    ),
) -> None:
    """Serve models over KServe v2 REST and gRPC, and the friendly /predict API.

    The serving options (--batching to --versions) are the defaults: a model's own settings (`shipyard
    model configure`) win; SHIPYARD_SERVING__MAX_BATCH_SIZE=64 and the like set them too.
    """
    from shipyard.server.serving import ServeSpec

    st = get_state(ctx)
    serving = opts.merged(st.settings.serving.model_dump(), opts.serving_updates(locals()))
    updates = {
        "host": host,
        "port": port,
        "grpc_port": grpc_port,
        "intra_op_threads": intra_op_threads,
        "inter_op_threads": inter_op_threads,
        "max_body_bytes": int(max_body_mb * 1024 * 1024) if max_body_mb is not None else None,
        "serving": serving,
        "alias": alias,
        "memory_budget_mb": memory_budget,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }
    given = {k: v for k, v in updates.items() if v is not None}
    settings = opts.validated(Settings, {**st.settings.model_dump(), **given}, "serve options")
    spec = ServeSpec(
        settings=settings,
        names=names or None,
        grpc=grpc,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
    )
    if engine == "ray":
        _serve_on_ray(spec, st.registry, replicas, autoscale, address, replica_cpus)
        return
    if engine != "local":
        raise InvalidInput(f"--engine {engine!r}: choose local or ray")
    if (replicas, autoscale, address) != (None, None, None):
        raise InvalidInput("--replicas, --autoscale and --address go with --engine ray")
    run_locally(spec)


def _serve_on_ray(
    spec: ServeSpec,
    registry: Registry,
    replicas: int | None,
    autoscale: str | None,
    address: str | None,
    cpus: float,
) -> None:
    """Deploy on Ray Serve and stay until Ctrl-C or SIGTERM, then take the deployment down."""
    import signal
    import threading

    try:
        from shipyard.engines import ray_serve
    except ImportError as exc:
        raise InvalidInput(f"--engine ray needs Ray Serve: pip install 'shipyard[ray]' ({exc})") from None

    settings = spec.settings
    if spec.workers > 1:
        raise InvalidInput("--workers is for --engine local; on Ray, say --replicas")
    scaling = ray_serve.Scaling.parse(replicas, autoscale)
    for name in spec.names or []:
        registry.version(name)  # a typo fails here, in one line, not in every replica
    if address is None:  # the replicas bind on this machine: say now if the ports are taken
        _port_free(settings.host, settings.port, "--port")
        if spec.grpc and settings.grpc_port:
            _port_free(settings.host, settings.grpc_port, "--grpc-port")
    console.print(f"starting {scaling.replicas} replica(s) on Ray Serve ...")
    started = ray_serve.start(spec, scaling, address=address, cpus=cpus)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        grpc_text = (
            f", gRPC on {settings.host}:{settings.grpc_port}" if spec.grpc and settings.grpc_port else ""
        )
        how = (
            f"{scaling.autoscale[0]} to {scaling.autoscale[1]} replicas"
            if scaling.autoscale
            else f"{started.replicas} replica{'s' if started.replicas > 1 else ''}"
        )
        console.print(
            f"listening on http://{settings.host}:{settings.port}{grpc_text} on every node, {how} on "
            f"Ray Serve (cluster {started.address})"
        )
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        ray_serve.stop()
        console.print("stopped")


def run_locally(spec: ServeSpec) -> None:
    """Take the ports, load the models, say so, and serve: here, or in `spec.workers` processes."""
    import os
    import tempfile

    from shipyard.monitor.metrics import MULTIPROCESS_ENV
    from shipyard.server.serving import Server
    from shipyard.server.transport import raise_open_file_limit
    from shipyard.server.workers import run_workers

    settings = spec.settings
    # the HTTP port is taken now (refusing connections until the models are loaded), so that the
    # listening line below is true when it is printed: a client may connect the moment it reads it
    http_socket = _bind(settings.host, settings.port, "--port")
    if spec.grpc and settings.grpc_port:
        _port_free(settings.host, settings.grpc_port, "--grpc-port")
    limits = settings.transport
    raise_open_file_limit(limits.max_connections + limits.grpc_max_concurrent_rpcs + 256)
    server = Server.from_spec(spec)  # loads and warms up every model: errors stop us here, as one line
    _announce(server, spec)
    http_socket.listen(2048)
    grpc_text = f", gRPC on {settings.host}:{settings.grpc_port}" if spec.grpc and settings.grpc_port else ""
    plural = f" in {spec.workers} worker processes" if spec.workers > 1 else ""
    where = f"{'https' if settings.tls_cert else 'http'}://{settings.host}:{settings.port}"
    console.print(f"listening on {where}{grpc_text}{plural}  (docs: /docs)")
    _admin_off(server)
    if spec.workers > 1:
        server.manager.unload_all()  # each worker loads its own sessions
        # every worker writes its metrics to files here, and /metrics in any of them sums them all
        os.environ.setdefault(MULTIPROCESS_ENV, tempfile.mkdtemp(prefix="shipyard-metrics-"))
        if not run_workers(spec, http_socket):
            raise typer.Exit(1)  # the worker said why
        return
    try:
        server.run([http_socket], log_level=spec.log_level, access_log=spec.access_log)
    except KeyboardInterrupt:
        pass
    finally:
        server.manager.unload_all()


def _announce(server: Server, spec: ServeSpec) -> None:
    """What each model serves, and what cannot be served."""
    manager = server.manager
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


def _admin_off(server: Server) -> None:
    """Say so when the admin endpoints are off: beyond loopback, and no admin token anywhere."""
    from shipyard.server.auth import is_loopback

    settings = server.settings
    admin_tokens = [t for t in server.registry.tokens() if "admin" in t.scopes]
    if not is_loopback(settings.host) and not settings.named_admin_tokens and not admin_tokens:
        console.print(
            "admin endpoints are off: this address is reachable beyond this machine and no admin token "
            "is set (SHIPYARD_ADMIN_TOKEN, or `shipyard token create NAME --scope admin`)"
        )


def _bind(host: str, port: int, flag: str) -> socket.socket:
    """Take the port, or say in one line that it is taken, rather than as a start-up traceback."""
    from shipyard.errors import Unavailable
    from shipyard.server.transport import bind_tcp

    try:
        return bind_tcp(host, port)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port} ({exc.strerror}): choose another {flag}") from None


def _port_free(host: str, port: int, flag: str) -> None:
    _bind(host, port, flag).close()
