"""Import a model into the registry: convert it to ONNX, check it numerically, store it as a version.

The Python API (`import_torch`, `import_sklearn`, `import_keras`, `import_boosting`, `import_onnx`)
and the CLI (`import_file`) share this path, so a model imported either way gets the same checks and
the same manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard import datasets
from shipyard.config import Settings
from shipyard.errors import InvalidInput, NotFound
from shipyard.registry import DatasetInfo, Registry, VersionRecord
from shipyard.registry.artifacts import sha256_bytes

if TYPE_CHECKING:
    from shipyard.convert.check import Converted

FRAMEWORK_BY_SUFFIX = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".torchscript": "torchscript",
    ".skops": "sklearn",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".keras": "keras",
    ".ubj": "xgboost",
    ".cbm": "catboost",
}
FRAMEWORKS = ("onnx", "torchscript", "sklearn", "keras", "tensorflow", "xgboost", "lightgbm", "catboost")
# Suffixes more than one library writes: the user says which (--framework)
AMBIGUOUS_SUFFIXES = {".json": ("xgboost", "lightgbm"), ".txt": ("xgboost", "lightgbm")}


def import_torch(
    module: Any,
    example_input: Any,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    sample: np.ndarray | None = None,
    tolerance: float = 1e-4,
    registry: Registry | None = None,
    preprocess: str | None = None,
    postprocess: str | None = None,
) -> VersionRecord:
    """Export a PyTorch `nn.Module` to ONNX (dynamic batch axis), check it, and register it.
    `preprocess` and `postprocess` are recipes (see `processed`)."""
    from shipyard.convert import torch as torch_convert

    sample = _sample(sample, dataset)
    converted = torch_convert.from_module(module, example_input, sample=sample, tolerance=tolerance)
    converted = processed(converted, preprocess, postprocess, tolerance)
    return _register(registry, name, converted, labels, description, dataset)


def import_sklearn(
    estimator: Any,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    sample: np.ndarray | None = None,
    tolerance: float = 1e-4,
    registry: Registry | None = None,
    postprocess: str | None = None,
) -> VersionRecord:
    """Convert a fitted scikit-learn estimator or pipeline (class probabilities kept) and register it."""
    from shipyard.convert import sklearn as sklearn_convert

    sample = _sample(sample, dataset)
    converted = sklearn_convert.from_estimator(estimator, sample=sample, tolerance=tolerance)
    converted = processed(converted, None, postprocess, tolerance)
    return _register(registry, name, converted, labels, description, dataset)


def import_keras(
    model_or_path: Any,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    sample: np.ndarray | None = None,
    tolerance: float = 1e-4,
    registry: Registry | None = None,
    preprocess: str | None = None,
    postprocess: str | None = None,
    trusted: bool = False,
) -> VersionRecord:
    """Convert a keras.Model, a .keras file (loaded in safe mode) or a TensorFlow SavedModel folder
    (`trusted` only: see _trust_saved_model)
    (dynamic batch axis), check it against the source model, and register it (with the recipes'
    processing, when given: see `processed`)."""
    from shipyard.convert import keras as keras_convert

    sample = _sample(sample, dataset)
    if isinstance(model_or_path, str | Path):
        _trust_saved_model(Path(model_or_path), trusted)
        converted = keras_convert.from_file(model_or_path, sample=sample, tolerance=tolerance)
    else:
        converted = keras_convert.from_model(model_or_path, sample=sample, tolerance=tolerance)
    converted = processed(converted, preprocess, postprocess, tolerance)
    return _register(registry, name, converted, labels, description, dataset)


def import_boosting(
    model_or_path: Any,
    *,
    name: str,
    framework: str | None = None,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    sample: np.ndarray | None = None,
    tolerance: float = 1e-4,
    registry: Registry | None = None,
    postprocess: str | None = None,
) -> VersionRecord:
    """Convert a fitted XGBoost, LightGBM or CatBoost model, or its saved file, check it, and
    register it with its classes and column names. `framework` (xgboost, lightgbm, catboost) is
    told by an object's type, by .ubj (xgboost) and .cbm (catboost); a .json or .txt file needs it."""
    from shipyard.convert import boosting

    sample = _sample(sample, dataset)
    if isinstance(model_or_path, str | Path):
        path = Path(model_or_path)
        told = _framework_of_file(path, framework) or "?"
        converted = boosting.from_file(path, told, sample=sample, tolerance=tolerance)
    else:
        converted = boosting.from_model(model_or_path, framework, sample=sample, tolerance=tolerance)
    converted = processed(converted, None, postprocess, tolerance)
    return _register(registry, name, converted, labels, description, dataset)


def import_onnx(
    path: str | Path,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: str | Path | None = None,
    registry: Registry | None = None,
    preprocess: str | None = None,
    postprocess: str | None = None,
) -> VersionRecord:
    """Validate an ONNX file with onnx.checker and a trial run, and register it (with the recipes'
    processing, when given: see `processed`)."""
    from shipyard.convert import onnx_file

    converted = onnx_file.from_onnx(Path(path), sample=_sample(None, dataset))
    converted = processed(converted, preprocess, postprocess)
    return _register(registry, name, converted, labels, description, dataset)


def import_file(
    path: Path,
    *,
    name: str,
    framework: str | None = None,
    input_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    description: str = "",
    dataset: Path | None = None,
    tolerance: float = 1e-4,
    registry: Registry | None = None,
    trusted: bool = False,
    report: Callable[[str], None] | None = None,
    new_version: bool = False,
    preprocess: str | None = None,
    postprocess: str | None = None,
    tokenizer: Path | None = None,
    max_length: int | None = None,
) -> VersionRecord:
    """The CLI's import: the framework is told by `framework` or guessed from the file suffix.

    Pickle-based files (joblib, .pkl, .pickle) run code from the file when loaded, so they are
    refused unless `trusted`; `report` receives what a trusted file was found to import. A model
    whose bytes and labels are those of the model's current version is that version again: it is
    returned as it is, unless `new_version` (running the same import twice adds nothing).
    `tokenizer`, a wordpiece vocabulary file, puts a tokenizer of `max_length` tokens in front of an
    ONNX model that takes token ids (convert/text.py), so that the version takes sentences.
    """
    framework = _framework_of_file(path, framework)
    sample = _sample(None, dataset)
    if tokenizer is None and max_length is not None:
        raise InvalidInput("--max-length is the tokenizer's: pass --tokenizer VOCAB.txt with it")
    if tokenizer is not None and framework != "onnx":
        raise InvalidInput(f"--tokenizer goes in front of an ONNX model; {path.name} is {framework}")
    if tokenizer is not None:
        from shipyard.convert import text

        converted = text.from_onnx(path, tokenizer, max_length=max_length, tolerance=tolerance)
    elif framework == "onnx":
        from shipyard.convert import onnx_file

        converted = onnx_file.from_onnx(path, sample=sample)
    elif framework == "torchscript":
        from shipyard.convert import torch as torch_convert

        if not input_shape:
            raise InvalidInput("a TorchScript model needs --input-shape, e.g. --input-shape 1,64")
        converted = torch_convert.from_torchscript(path, input_shape, sample=sample, tolerance=tolerance)
    elif framework == "sklearn":
        from shipyard.convert import sklearn as sklearn_convert

        converted = sklearn_convert.from_file(
            path, sample=sample, tolerance=tolerance, trusted=trusted, report=report
        )
    elif framework in ("keras", "tensorflow"):
        from shipyard.convert import keras as keras_convert

        _trust_saved_model(path, trusted)
        converted = keras_convert.from_file(path, sample=sample, tolerance=tolerance)
    elif framework in ("xgboost", "lightgbm", "catboost"):
        from shipyard.convert import boosting

        converted = boosting.from_file(path, framework, sample=sample, tolerance=tolerance)
    else:
        raise InvalidInput(
            f"cannot tell the framework of {path.name}: pass --framework ({', '.join(FRAMEWORKS)}) "
            f"or use one of the suffixes {', '.join(FRAMEWORK_BY_SUFFIX)} (or a SavedModel folder)"
        )
    converted = processed(converted, preprocess, postprocess, tolerance)
    if not new_version and registry is not None:
        current = _current(registry, name)
        wanted = list(labels) if labels is not None else converted.labels
        same = current is not None and current.sha256 == sha256_bytes(converted.onnx_bytes)
        if (
            same
            and current is not None
            and (current.labels, current.signature) == (wanted, converted.signature)
        ):
            return current
    return _register(registry, name, converted, labels, description, dataset)


def processed(
    converted: Converted, preprocess: str | None, postprocess: str | None, tolerance: float = 1e-4
) -> Converted:
    """`converted` with its processing declared: `preprocess`, an image recipe ("image: resize=256,
    center_crop=224, normalize=imagenet"), puts its graph in front of the model, checked on pictures
    (processing.attach_image); `postprocess` ("softmax, top_k=3", "sigmoid, threshold=0.4",
    "regression, unit=EUR") says how /predict reads the outputs (processing/post.py)."""
    from dataclasses import replace

    from shipyard import processing

    if preprocess is not None:
        converted = processing.attach_image(converted, preprocess, tolerance)
    if postprocess is not None:
        converted = replace(converted, signature=processing.post.apply(converted.signature, postprocess))
    return converted


def _framework_of_file(path: Path, told: str | None = None) -> str | None:
    """The framework a model file holds: `told`, else its suffix's; a SavedModel folder's is
    tensorflow. None when the suffix does not say."""
    from shipyard.convert.keras import is_saved_model

    if is_saved_model(path):
        if told not in (None, "keras", "tensorflow"):
            raise InvalidInput(
                f"{path} is a TensorFlow SavedModel folder: --framework {told} does not read it"
            )
        return "tensorflow"
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder: a model is a file, or a SavedModel folder (saved_model.pb)")
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    if told:
        return told
    suffix = path.suffix.lower()
    if suffix in AMBIGUOUS_SUFFIXES:
        choices = " or ".join(f"--framework {name}" for name in AMBIGUOUS_SUFFIXES[suffix])
        raise InvalidInput(f"{path.name} may hold an XGBoost or a LightGBM model: say which with {choices}")
    return FRAMEWORK_BY_SUFFIX.get(suffix)


def _trust_saved_model(path: Path, trusted: bool) -> None:
    """A SavedModel's graph runs when it is checked, and TensorFlow's file operations can read and
    write files from a graph: like a pickle, a SavedModel folder is loaded only when trusted."""
    if path.is_dir() and not trusted:
        raise InvalidInput(
            f"{path.name} is a TensorFlow SavedModel: checking it runs its graph, which can read and write "
            "files, so shipyard loads SavedModel folders only with --trust (trusted=True in Python) for "
            "folders you made; a .keras file loads without it"
        )


def _current(registry: Registry, name: str) -> VersionRecord | None:
    try:
        return registry.version(name)
    except NotFound:
        return None


def read_labels(path: Path) -> list[str]:
    """Labels from a text file (one per line) or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no such labels file: {path}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"labels file {path} is not UTF-8 text") from None
    if text.lstrip().startswith("["):
        import orjson

        try:
            labels = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"labels file {path} is not a valid JSON list: {exc}") from None
        if not isinstance(labels, list):
            raise InvalidInput(f"labels file {path} must hold a JSON list of strings")
        return [str(label) for label in labels]
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise InvalidInput(f"labels file {path} is empty")
    return labels


def dataset_info(path: Path) -> DatasetInfo:
    if not path.is_file():
        raise NotFound(f"no such dataset file: {path}")
    return datasets.dataset_info(path)


def _sample(sample: np.ndarray | None, dataset: str | Path | None) -> np.ndarray | None:
    if sample is not None or dataset is None:
        return sample
    path = Path(dataset)
    if not path.is_file():
        raise NotFound(f"no such dataset file: {path}")
    return datasets.sample_rows(path)


def _register(
    registry: Registry | None,
    name: str,
    converted: Converted,
    labels: Sequence[str] | None,
    description: str,
    dataset: str | Path | None,
) -> VersionRecord:
    own = registry is None
    reg = registry or Registry.open(Settings())
    try:
        return reg.register(
            name,
            converted.onnx_bytes,
            signature=converted.signature,
            framework=converted.framework,
            check=converted.check.to_dict(),
            labels=list(labels) if labels is not None else converted.labels,
            description=description,
            dataset=dataset_info(Path(dataset)) if dataset is not None else None,
        )
    finally:
        if own:
            reg.close()
