"""Pickle-based model files (joblib, .pkl, .pickle): scanned before loading, loaded only on trust.

Loading a pickle runs whatever code the file names, so shipyard never unpickles one by default.
Every such file is first scanned without running it: its opcodes (read through joblib's array
data by `joblib_stream`) go to picklescan, which lists the globals the file would import and marks
the known-dangerous ones (os.system, subprocess, eval, ...). A dangerous file is refused even
with trust; any other is loaded only when the caller says it trusts the file, and then by an
unpickler that resolves nothing the scan did not list, so the scan and the load cannot disagree
about what the file imports. The scan is a deny-list: trust still means "I made this file".
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.convert.check import first_line
from shipyard.convert.joblib_stream import open_pickle, pickle_streams
from shipyard.convert.pickle_ops import Unscannable
from shipyard.errors import ConversionFailed

Report = Callable[[str], None]

SAFE_FORMAT = (
    'save the model with skops instead: skops.io.dump(model, "model.skops"), then import the .skops file'
)
_MISSING = "picklescan and joblib are needed to scan pickles: pip install 'shipyard[sklearn]'"

# picklescan logs each finding as a warning; shipyard reports them itself, in one line
logging.getLogger("picklescan").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class PickleScan:
    """What a pickle file would import, as found without running it."""

    imports: tuple[str, ...]  # every global the file references, "module.name", sorted
    dangerous: tuple[str, ...]  # those the scanner knows can run commands or code
    allowed: frozenset[tuple[str, str]]  # (module, name) the load may resolve

    def describe(self) -> str:
        return ", ".join(self.imports) if self.imports else "nothing"


def scan(path: Path) -> PickleScan:
    """List the globals a joblib or pickle file references, without unpickling it."""
    try:
        from picklescan.scanner import SafetyLevel, scan_pickle_bytes
    except ImportError:
        raise ConversionFailed(_MISSING) from None
    try:
        with open_pickle(path) as stream:
            streams = pickle_streams(stream)
    except Unscannable as exc:
        raise ConversionFailed(
            f"{path.name} cannot be scanned before loading ({exc}), and shipyard loads no pickle it "
            f"cannot check: {SAFE_FORMAT}"
        ) from None
    except (OSError, EOFError, ValueError) as exc:  # a corrupt compressed stream
        raise ConversionFailed(f"{path.name} cannot be read: {first_line(exc)}") from None
    found: dict[tuple[str, str], bool] = {}
    for data in streams:
        result = scan_pickle_bytes(io.BytesIO(data), path.name, multiple_pickles=False)
        if result.scan_err:
            raise ConversionFailed(
                f"{path.name} cannot be scanned before loading: picklescan cannot parse it"
            )
        for g in result.globals:
            key = (str(g.module), str(g.name))
            found[key] = found.get(key, False) or g.safety == SafetyLevel.Dangerous
    names = {key: f"{key[0]}.{key[1]}" for key in found}
    return PickleScan(
        imports=tuple(sorted(names.values())),
        dangerous=tuple(sorted(names[key] for key, bad in found.items() if bad)),
        allowed=frozenset(key for key, bad in found.items() if not bad),
    )


def load(path: Path, *, trusted: bool, report: Report | None = None) -> Any:
    """Scan, then unpickle with joblib only when trusted and nothing dangerous was found."""
    found = scan(path)
    if found.dangerous:
        raise ConversionFailed(
            f"{path.name} is refused even with --trust: loading it would call "
            f"{', '.join(found.dangerous)}, which can run commands or code on this machine"
        )
    if not trusted:
        raise ConversionFailed(
            f"{path.name} is a pickle: loading it runs code from the file, so shipyard loads joblib and "
            f"pickle files only with --trust (trusted=True in Python) for files you made; {SAFE_FORMAT}"
        )
    if report is not None:
        report(f"{path.name} imports {found.describe()}; loading it because it is trusted")
    return _unpickle(path, found.allowed)


class _Unscanned(pickle.UnpicklingError):
    pass


def _unpickle(path: Path, allowed: frozenset[tuple[str, str]]) -> Any:
    try:
        from joblib.numpy_pickle import NumpyUnpickler
    except ImportError:
        raise ConversionFailed(_MISSING) from None

    class ScannedOnly(NumpyUnpickler):  # type: ignore[misc]  # joblib has no type hints
        """joblib's unpickler (arrays read in place), resolving only globals the scan listed."""

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in allowed:
                raise _Unscanned(f"{module}.{name}")
            return super().find_class(module, name)

    try:
        with open_pickle(path) as stream:
            return ScannedOnly(str(path), stream, True).load()
    except _Unscanned as exc:
        raise ConversionFailed(
            f"{path.name} refers to {exc} where the scan did not see it; refusing to load it"
        ) from None
    except Exception as exc:  # unpickling raises anything the stored objects raise
        raise ConversionFailed(f"{path.name} cannot be loaded with joblib: {first_line(exc)}") from exc
