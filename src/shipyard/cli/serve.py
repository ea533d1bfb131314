"""`shipyard serve`: load models from the registry and serve them over HTTP."""

from __future__ import annotations

import typer

from shipyard.cli.common import console, get_state


def serve(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(None, help="Models to serve (all registered when none)."),
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="HTTP port (default 8000)."),
    intra_op_threads: int | None = typer.Option(None, help="ORT threads per operator (0: ORT default)."),
    inter_op_threads: int | None = typer.Option(None, help="ORT threads across operators."),
    max_body_mb: float | None = typer.Option(None, help="Largest request body in MiB (default 64)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve models over KServe v2 REST and the friendly /predict API."""
    import uvicorn

    from shipyard.dataplane import DataPlane
    from shipyard.runtime import ModelManager, RunnerOptions
    from shipyard.server.http import create_app

    st = get_state(ctx)
    updates = {
        "host": host,
        "port": port,
        "intra_op_threads": intra_op_threads,
        "inter_op_threads": inter_op_threads,
        "max_body_bytes": int(max_body_mb * 1024 * 1024) if max_body_mb is not None else None,
    }
    settings = st.settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    manager = ModelManager(
        st.registry,
        RunnerOptions(settings.intra_op_threads, settings.inter_op_threads, settings.providers),
    )
    manager.load(names or None)
    app = create_app(DataPlane(manager), max_body_bytes=settings.max_body_bytes)
    for name in manager.names:
        served = manager.served(name)
        versions = ", ".join(str(v) for v in sorted(served.versions))
        console.print(f"serving [bold]{name}[/] versions {versions} (default {served.default})")
    console.print(f"listening on http://{settings.host}:{settings.port}  (docs: /docs)")
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
    finally:
        manager.unload_all()
