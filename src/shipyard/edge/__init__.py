"""Edge export: the version that passed its gates, in a target's own format, checked on that target.

    shipyard export digits:production --target ort-mobile|web|tflite --out DIR

A target (ort_mobile.py, web.py, tflite.py) builds its files into a folder beside DIR and runs them on
its own runtime (ONNX Runtime on the .ort file, headless Chromium on the page, the LiteRT interpreter).
The same inputs go through the server's graph (checks.py); the folder becomes DIR only when the outputs
agree within the tolerance, with a manifest inside that names the model, version and sha256, and the
registry's history records the export. A version whose gate failed is refused unless forced (gates.py).
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from shipyard._version import __version__
from shipyard.edge import checks, gates
from shipyard.errors import Conflict, InvalidInput
from shipyard.registry import Registry, VersionRecord, parse_ref

TARGETS = {
    "ort-mobile": "shipyard.edge.ort_mobile",
    "web": "shipyard.edge.web",
    "tflite": "shipyard.edge.tflite",
}
MANIFEST = "shipyard-export.json"


@dataclass(frozen=True)
class Options:
    int8: bool = False
    """int8 weights (optimize's dynamic quantization), for targets that take them (ort-mobile)."""
    tolerance: float = 1e-4
    force: bool = False
    """Export a version whose gate failed (the manifest and the history say so)."""


@dataclass(frozen=True)
class Built:
    """What a target wrote into the export's folder."""

    model_file: str
    """The model's file, relative to the folder."""
    onnx_bytes: bytes | None = None
    """The graph the export holds when it is not the version's own (int8 weights): the server's
    answer is this graph's on ONNX Runtime, and the version's own is compared as top-1 agreement."""
    operators: list[str] | None = None
    """The operators the export needs, when the target says (else the graph's)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Whatever else the manifest should say (the operator config of a reduced build, ...)."""


@dataclass(frozen=True)
class Ran:
    """The target's runtime on the check's inputs."""

    outputs: list[np.ndarray]
    load_s: float
    latency_s: float
    """The median time of one single-row run."""
    runtime: str
    """What ran it, with its version ("onnxruntime 1.32.0", "Chromium 156 + onnxruntime-web 1.23.2")."""


class Target(Protocol):
    """One edge format. `build` writes the model (and what runs it) into `folder`; `run` loads what was
    built, on the target's own runtime, and runs `inputs` (the graph's inputs, a batch), answering the
    outputs named, in order."""

    def build(self, onnx_bytes: bytes, record: VersionRecord, folder: Path, options: Options) -> Built: ...

    def run(self, folder: Path, built: Built, inputs: dict[str, np.ndarray], outputs: list[str]) -> Ran: ...


@dataclass(frozen=True)
class Report:
    record: VersionRecord
    target: str
    out: Path
    size: int
    """Bytes of the model file."""
    total: int
    """Bytes of the whole folder."""
    ran: Ran
    check: checks.Check
    operators: list[str]
    forced: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.record.model, "version": self.record.number, "sha256": self.record.sha256,
            "target": self.target, "size": self.size, "folder_size": self.total,
            "load_ms": round(self.ran.load_s * 1000, 3), "latency_ms": round(self.ran.latency_s * 1000, 3),
            "runtime": self.ran.runtime, "operators": self.operators, "check": self.check.to_dict(),
            "forced": self.forced,
        }  # fmt: skip

    def lines(self) -> list[str]:
        check = self.check
        agreement = "" if check.top1 is None else f", top-1 agreement {check.top1:.0%}"
        if check.top1_version is not None:
            agreement += f" ({check.top1_version:.0%} with the version's own weights)"
        return [
            f"exported {self.record.ref} (sha256 {self.record.sha256[:12]}) for {self.target} to {self.out}",
            f"  model    {self.size:,} bytes ({self.total:,} in the folder)",
            f"  check    {check.samples} samples on {self.ran.runtime}: max |diff| {check.max_abs_diff:.2e} "
            f"<= {check.tolerance:g}{agreement}",
            f"  speed    load {self.ran.load_s * 1000:.1f} ms, one row {self.ran.latency_s * 1000:.3f} ms "
            "(this machine)",
            f"  ops      {', '.join(self.operators)}",
            *([f"  forced   {self.forced}"] if self.forced else []),
        ]


def target(name: str) -> Target:
    module = TARGETS.get(name)
    if module is None:
        raise InvalidInput(f"unknown target {name!r}: {', '.join(TARGETS)}")
    found: Target = importlib.import_module(module).TARGET
    return found


def export(
    registry: Registry,
    ref: str,
    target_name: str,
    out: Path,
    options: Options = Options(),
    *,
    reason: str = "",
) -> Report:
    """Export the version `ref` names for `target_name` into `out` (made, or replacing an earlier
    export), checked on the target; the registry's history records it."""
    chosen = target(target_name)
    shown, out = out, out.resolve()  # the report says the folder as the user named it
    if out == Path.cwd() or out in Path.cwd().parents:
        raise InvalidInput(f"--out {out} holds the current folder: name a folder of its own")
    name, version = parse_ref(ref)
    record = registry.version(name, version)
    failed = gates.failed(registry, record)
    if failed is not None and not options.force:
        raise Conflict(
            f"{record.ref} {failed}: only a version that passed is exported (--force exports it anyway)"
        )
    _check_out(out)
    onnx_bytes = registry.artifact(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        built = chosen.build(onnx_bytes, record, staging, options)
        inputs = checks.inputs(record.signature)
        names = list(record.signature.output_names)
        expected = checks.reference(built.onnx_bytes or onnx_bytes, inputs, names)
        ran = chosen.run(staging, built, inputs, names)
        check = checks.compare(expected, ran.outputs, names, record.signature, options.tolerance)
        if built.onnx_bytes is not None:  # int8: how often it still picks the version's own class
            own = checks.reference(onnx_bytes, inputs, names)
            check = checks.with_agreement(check, own, ran.outputs, names, record.signature)
        operators = built.operators or checks.operators(built.onnx_bytes or onnx_bytes)
        size = (staging / built.model_file).stat().st_size
        report = Report(record, target_name, shown, size, _size(staging), ran, check, operators, failed)
        manifest = {
            **report.to_dict(), "files": _files(staging), "model_file": built.model_file, **built.extra,
            "tolerance": options.tolerance, "int8": options.int8, "shipyard": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        staging.chmod(0o755)  # mkdtemp made it private; an export is for a web server or a device to read
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    detail = f"{target_name} to {out}: max |diff| {check.max_abs_diff:.2e}" + (" (forced)" if failed else "")
    registry.record(record.model, "export", record.number, reason, detail=detail)
    return report


def _check_out(out: Path) -> None:
    """`out` must be new, empty, or an earlier export (which the new one replaces)."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"{out} is a file: --out names a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise Conflict(f"{out} is not empty and holds no export: give a new --out folder")


def _replace(staging: Path, out: Path) -> None:
    """Put the finished folder in place: an earlier export is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)  # the earlier export stays where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    from shipyard.registry.artifacts import sha256_bytes

    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_bytes(p.read_bytes())}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
