"""`shipyard model ...`: import, inspect, alias, restore, export and delete registered versions."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Literal

import orjson
import typer
from rich.table import Table

from shipyard.cli import optimize as optimizing
from shipyard.cli import serving_options as opts
from shipyard.cli.common import console, get_state, refs, when
from shipyard.cli.help import Group
from shipyard.cli.manifest import print_imported, print_version
from shipyard.errors import InvalidInput
from shipyard.registry import Event, parse_ref

app = typer.Typer(cls=Group, help="Import models and manage their versions.", no_args_is_help=True)

NAME = typer.Argument(..., metavar="NAME", help="The model.")
VERSION = typer.Argument(..., metavar="VERSION", help="A version number of it.")

LIVE = "running servers pick it up at their next registry check, without a restart"


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise InvalidInput(f"bad --input-shape {text!r}: expected numbers like 1,64") from None
    if not dims:
        raise InvalidInput("--input-shape is empty")
    return dims


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Path = typer.Argument(
        ...,
        metavar="FILE",
        help="The model: .onnx, TorchScript .pt/.pth, scikit-learn .skops (.joblib/.pkl with --trust), "
        "Keras .keras, a TensorFlow SavedModel folder, XGBoost .ubj/.json, LightGBM .txt, CatBoost .cbm.",
    ),
    name: str = typer.Option(
        ..., "--name", "-n", metavar="NAME", help="Model to register it as (a new one, or a new version)."
    ),
    labels: Path | None = typer.Option(
        None, metavar="FILE", help="Class labels, one per line or a JSON list: /predict answers with them."
    ),
    input_shape: str | None = typer.Option(
        None,
        metavar="SHAPE",
        help="TorchScript (needed there): the input's shape, batch axis first, e.g. 1,64; -1: any size.",
    ),
    dataset: Path | None = typer.Option(
        None,
        metavar="FILE",
        help="Data it was trained or evaluated on: recorded by name, size and sha256; the rows of an "
        ".npz, .npy or .csv feed the check.",
    ),
    description: str = typer.Option("", metavar="TEXT", help="Free text stored with the version."),
    framework: Literal[
        "onnx", "torchscript", "sklearn", "keras", "tensorflow", "xgboost", "lightgbm", "catboost"
    ]
    | None = typer.Option(
        None,
        metavar="FRAMEWORK",
        show_default="from the file's suffix",
        help="What the file holds: onnx, torchscript, sklearn, keras, tensorflow (a SavedModel folder), "
        "xgboost, lightgbm or catboost. A .json or .txt file needs it (xgboost or lightgbm).",
    ),
    tolerance: float = typer.Option(
        1e-4, metavar="NUMBER", help="Largest |source - ONNX| output difference the check accepts."
    ),
    reference: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        metavar="FILE",
        help="Rows live inputs are compared with to spot drift (as `monitor reference` stores them).",
    ),
    trust: bool = typer.Option(
        False,
        "--trust",
        help="Load a pickle-based file (.joblib, .pkl) or a TensorFlow SavedModel folder: they can run code "
        "or touch files when loaded, so only for models you made.",
    ),
    new_version: bool = typer.Option(
        False, "--new-version", help="Register a new version even when the current one holds this model."
    ),
    preprocess: str | None = typer.Option(
        None,
        metavar="RECIPE",
        help="Take pictures: 'image: resize=256, center_crop=224, scale=1/255, normalize=imagenet, "
        "layout=NCHW, channels=RGB' (each optional; sizes default to the model's).",
    ),
    postprocess: str | None = typer.Option(
        None,
        metavar="RECIPE",
        help="How /predict reads the outputs: softmax | probabilities | sigmoid | multilabel "
        "[, threshold=0.5] [, top_k=3] [, output=NAME], or regression [, unit=EUR].",
    ),
    tokenizer: Path | None = typer.Option(
        None,
        metavar="VOCAB",
        help="Take sentences: a wordpiece (BERT) vocabulary, one token a line, whose tokenizer is put in "
        "front of the ONNX model's input_ids (and attention_mask).",
    ),
    max_length: int | None = typer.Option(
        None,
        min=2,
        metavar="N",
        show_default="the model's sequence length, else 64",
        help="With --tokenizer: tokens a sentence is cut or padded to, [CLS] and [SEP] included.",
    ),
) -> None:
    """Convert a model to ONNX, check it numerically, and register it as a new version."""
    from shipyard.importing import import_file, read_labels

    st = get_state(ctx)
    refs_before = refs(st.registry, name)
    with console.status(f"importing {path.name}..."):
        record = import_file(
            path,
            name=name,
            framework=framework,
            input_shape=_shape(input_shape) if input_shape else None,
            labels=read_labels(labels) if labels else None,
            description=description,
            dataset=dataset,
            tolerance=tolerance,
            registry=st.registry,
            trusted=trust,
            report=console.print,
            new_version=new_version,
            preprocess=preprocess,
            postprocess=postprocess,
            tokenizer=tokenizer,
            max_length=max_length,
        )
    if record.ref in refs_before:
        console.print(
            f"{record.ref} already holds this model (sha256 {record.sha256[:12]}, same labels): nothing new "
            "registered (--new-version registers it again)"
        )
    else:
        print_imported(record)
    if reference is not None:
        from shipyard.monitor.reference import profile_version

        profile = profile_version(st.registry, record, reference)
        st.registry.set_reference(name, record.number, profile, reference.name)
        console.print(f"reference profile: {profile['rows']} rows of {reference.name}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every registered model with its versions and aliases."""
    models = get_state(ctx).registry.models()
    if not models:
        console.print("no models yet: shipyard model import PATH --name NAME")
        return
    table = Table("model", "versions", "default", "aliases", "created")
    for m in models:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items()))
        table.add_row(
            m.name, _numbers(m.versions), str(m.default_version), aliases or "-", when(m.created_at)
        )
    console.print(table)


def _numbers(numbers: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in numbers)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        metavar="NAME[:VERSION]",
        help="A version: NAME (its default version), NAME:3, NAME:production or NAME:latest.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON instead of a table."),
) -> None:
    """A version's manifest: signature, labels, source, check, dataset, hashes."""
    name, version = parse_ref(ref)
    record = get_state(ctx).registry.version(name, version)
    if as_json:
        sys.stdout.write(orjson.dumps(record.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print_version(record)


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: str = NAME,
    version: int = VERSION,
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="The alias, e.g. production or staging."),
) -> None:
    """Point an alias such as `production` at a version."""
    before = get_state(ctx).registry.set_alias(name, version, alias_name)
    was = f" (was {before})" if before is not None else ""
    console.print(f"{name}:{alias_name} -> {version}{was}")


@app.command("configure")
def configure(
    ctx: typer.Context,
    name: str = NAME,
    batching: bool | None = opts.BATCHING,
    max_batch_size: int | None = opts.MAX_BATCH_SIZE,
    max_queue_delay_us: int | None = opts.MAX_QUEUE_DELAY_US,
    max_queue_size: int | None = opts.MAX_QUEUE_SIZE,
    instances: int | None = opts.INSTANCES,
    execution: str | None = opts.EXECUTION,
    max_in_flight: int | None = opts.MAX_IN_FLIGHT,
    timeout_s: float | None = opts.TIMEOUT_S,
    versions: str | None = opts.VERSIONS,
    reset: bool = typer.Option(
        False, "--reset", help="Forget the model's settings first: back to the server's defaults."
    ),
) -> None:
    """Set how a model is served (batching, instances, queue, versions); stored in the registry.

    An option not given keeps the model's value; one never set is the server's (`shipyard serve
    --help` shows its defaults). Running servers apply every setting live, at their next registry
    check (every second by default, SHIPYARD_WATCH_INTERVAL_S): resident versions are rebuilt off
    the request path and swapped in at once, with no restart and no failed request. A server that
    does not watch (SHIPYARD_WATCH_INTERVAL_S=0) applies them when the model is loaded again
    (POST /v2/repository/models/NAME/load).
    """
    updates = opts.serving_updates(locals())
    registry = get_state(ctx).registry
    opts.merged({} if reset else registry.model(name).serving, updates)
    if reset:
        registry.configure(name, dict.fromkeys(registry.model(name).serving))
    result = registry.configure(name, updates) if updates or not reset else {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(result.items())) or "server defaults"
    console.print(f"{name} is served with {shown}")
    if updates or reset:
        console.print(LIVE)


@app.command("restore")
def restore(ctx: typer.Context, name: str = NAME, version: int = VERSION) -> None:
    """Make an earlier version the production one again."""
    before = get_state(ctx).registry.restore(name, version)
    was = f" (was {before})" if before is not None else ""
    console.print(f"restored {name}:{version} as production{was}")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = NAME,
    at: str | None = typer.Option(
        None,
        "--at",
        metavar="TIME",
        help="Only which versions served what share of the traffic then: now, -10m (ago), or "
        "2026-12-01 14:30 (local time unless it names a zone).",
    ),
) -> None:
    """Every change to a model, oldest first."""
    events = get_state(ctx).registry.history(name)
    if at is not None:
        _live_at(name, events, _moment(at))
        return
    table = Table("time", "event", "version", "from", "detail", "actor", "reason")
    for e in events:
        table.add_row(
            when(e.created_at),
            e.kind,
            "-" if e.version is None else str(e.version),
            "-" if e.from_version is None else str(e.from_version),
            e.detail,
            e.actor,
            e.reason,
        )
    console.print(table)


def _moment(text: str) -> datetime:
    from datetime import timedelta

    from shipyard.rollout.plan import DURATION, UNIT_S

    text = text.strip()
    ago = DURATION.fullmatch(text[1:]) if text.startswith("-") else None
    if text == "now" or ago:
        seconds = float(ago[1]) * UNIT_S[ago[2]] if ago else 0.0
        return datetime.now().astimezone() - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--at {text!r} is not a time: now, -10m or 2026-12-01 14:30") from None
    return moment.astimezone() if moment.tzinfo is None else moment


def _live_at(name: str, events: list[Event], moment: datetime) -> None:
    from shipyard.rollout.timeline import traffic_at

    live = traffic_at(events, moment)
    if not live:
        console.print(
            f"{name}: no alias named a version at {when(moment)} (a server answered with the newest)"
        )
        return
    for alias, now in sorted(live.items()):
        shares = ", ".join(f"version {v} {s:g}%" for v, s in now.shares())
        console.print(f"{name} {alias} at {when(moment)}: {shares} (since {when(now.since)})")


@app.command("export")
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="The version to write (NAME: its default version)."
    ),
    path: Path = typer.Argument(
        ..., metavar="PATH", help="The .onnx file to write, or a folder to write NAME-VERSION.onnx in."
    ),
) -> None:
    """Write a version's ONNX file back out (verified against its hash)."""
    name, version = parse_ref(ref)
    record = get_state(ctx).registry.export(name, version, path)
    console.print(f"wrote {record.ref} to {path} ({record.size:,} bytes)")


@app.command("delete")
def delete(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME[:VERSION]", help="NAME:VERSION deletes that version; NAME, every version."
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask first (needed when not run from a terminal)."
    ),
) -> None:
    """Delete a version, or a whole model; artifacts no other version uses are removed."""
    name, version = parse_ref(ref)
    registry = get_state(ctx).registry
    number = registry.version(name, version).number if version else None
    what = f"{name}:{number}" if number else f"model {name} and all its versions"
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(f"refusing to delete {what} without --yes")
        typer.confirm(f"delete {what}?", abort=True)
    numbers = registry.delete(name, number)
    console.print(f"deleted {name} version{'s' if len(numbers) > 1 else ''} {_numbers(tuple(numbers))}")


app.command("compare")(optimizing.compare)
