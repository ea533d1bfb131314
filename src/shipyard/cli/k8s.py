"""`shipyard k8s`: Kubernetes and KServe manifests for a model, and the KServe runtime's entry point."""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard.cli.common import console, get_state
from shipyard.cli.help import Group
from shipyard.k8s.target import DEFAULT_IMAGE, DEFAULT_SECRET

app = typer.Typer(cls=Group, help="Kubernetes and KServe manifests.", no_args_is_help=True)


@app.command("render")
def render(
    name: str = typer.Argument(..., metavar="NAME", help="The model to serve (as the registry names it)."),
    replicas: int = typer.Option(..., min=1, metavar="N", help="Pods to run (the autoscaler's floor too)."),
    image: str = typer.Option(DEFAULT_IMAGE, metavar="IMAGE", help="The shipyard image (`make image`)."),
    out: Path = typer.Option(Path("deploy"), metavar="DIR", help="Folder to write k8s/ and kserve/ in."),
    min_replicas: int | None = typer.Option(
        None, min=1, metavar="N", show_default="--replicas", help="Fewest pods the autoscaler keeps."
    ),
    max_replicas: int | None = typer.Option(
        None, min=1, metavar="N", show_default="2 x --replicas", help="Most pods the autoscaler starts."
    ),
    cpu: str = typer.Option("1", metavar="CPU", help="CPU requested per pod (500m, 2, ...)."),
    memory: str = typer.Option("1Gi", metavar="MEMORY", help="Memory per pod, requested and capped."),
    target_cpu: int = typer.Option(
        70, metavar="PERCENT", help="CPU use, as a share of the request, the autoscaler aims for."
    ),
    registry_secret: str = typer.Option(
        DEFAULT_SECRET,
        metavar="SECRET",
        help="Secret whose keys are SHIPYARD_* variables naming the shared registry "
        "(SHIPYARD_DATABASE_URL, SHIPYARD_ARTIFACTS) and its credentials.",
    ),
    storage_uri: str | None = typer.Option(
        None,
        metavar="URI",
        show_default="s3://shipyard-models/NAME",
        help="KServe: the folder holding the model's .onnx file (and labels.txt).",
    ),
) -> None:
    """Write Kubernetes (Deployment, Service, autoscaler, disruption budget) and KServe manifests."""
    from shipyard.k8s import Target, write

    target = Target(
        name,
        replicas=replicas,
        image=image,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cpu=cpu,
        memory=memory,
        target_cpu=target_cpu,
        registry_secret=registry_secret,
        storage_uri=storage_uri,
    )
    for path in write(target, out):
        console.print(f"wrote {path}")


@app.command("serve")
def serve(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The name to serve the model as."),
    model_dir: Path = typer.Option(
        Path("/mnt/models"), metavar="DIR", help="The folder holding one .onnx file (and labels.txt)."
    ),
    port: int | None = typer.Option(
        None, min=0, max=65535, metavar="PORT", envvar="SHIPYARD_PORT", help="HTTP port.", show_default="8000"
    ),
    grpc_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        metavar="PORT",
        envvar="SHIPYARD_GRPC_PORT",
        help="gRPC port.",
        show_default="8001",
    ),
    log_level: str = typer.Option(
        "warning", metavar="LEVEL", help="Server log level, as for `shipyard serve`."
    ),
) -> None:
    """Register the model in DIR and serve it: the entry point of the KServe runtime.

    KServe mounts the InferenceService's storageUri at /mnt/models; the model found there is
    registered as NAME (the same file again adds no version) and served as `shipyard serve NAME` does.
    """
    from shipyard.cli.serve import run_locally
    from shipyard.k8s.modeldir import import_model_dir
    from shipyard.names import check_name
    from shipyard.server.serving import ServeSpec

    st = get_state(ctx)
    record = import_model_dir(model_dir, check_name(name), st.registry)
    console.print(f"registered {model_dir} as {record.model} version {record.number}")
    st.registry.close()
    given = {"port": port, "grpc_port": grpc_port}
    settings = st.settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    run_locally(ServeSpec(settings=settings, names=[record.model], log_level=log_level))
