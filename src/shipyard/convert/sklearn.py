"""Convert a fitted scikit-learn estimator or pipeline to ONNX, and prove both give the same numbers.

scikit-learn and skl2onnx are an optional extra, so they are imported only inside the functions here.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from shipyard.convert import pickles
from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    Converted,
    first_line,
    require_close,
    run_onnx,
    signature_of,
)
from shipyard.convert.pickles import Report
from shipyard.convert.wordpiece import check_sentences
from shipyard.errors import ConversionFailed, NotFound
from shipyard.signature import Scores

OPSET = {"": 17, "ai.onnx.ml": 3}
CHECK_ROWS = 16
INPUT_NAME = "input"
# scikit-learn's token patterns for ONNX Runtime's Tokenizer, whose regular expressions are RE2's: RE2's \w
# is ASCII only and it has no (?u), while Python's \w is any letter, digit or underscore. Greedy, runs of
# such characters are the words \b\w\w+\b finds. (skl2onnx's own replacement of the default,
# [a-zA-Z0-9_]+, keeps one-letter words, which shifts bigrams, and splits words at accented letters.)
TOKEN_PATTERNS = {
    r"(?u)\b\w\w+\b": r"[\p{L}\p{N}_][\p{L}\p{N}_]+",  # the default
    r"(?u)\b\w+\b": r"[\p{L}\p{N}_]+",  # one-letter words too
}
# The locale ONNX's StringNormalizer lowercases in. Its default, en_US.UTF-8, is missing from most
# container images (the session then fails to load), and the C locale lowercases ASCII only. C.UTF-8 is
# built into glibc 2.35 and shipped by Debian and Ubuntu images; on a machine without it the check fails.
TEXT_LOCALE = "C.UTF-8"
_MISSING = "scikit-learn is not installed: pip install 'shipyard[sklearn]'"
_MISSING_SKOPS = "skops is not installed: pip install 'shipyard[sklearn]'"
_LIBRARIES = frozenset({"sklearn", "numpy", "scipy"})


def _require_sklearn() -> None:
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise ConversionFailed(_MISSING) from None


def from_estimator(
    estimator: Any, sample: Array | Sequence[str] | None = None, tolerance: float = 1e-4
) -> Converted:
    """Convert a fitted classifier or regressor (or a Pipeline ending in one) and check it.

    Classifiers are checked on predict_proba against the ONNX `probabilities` output (falling back
    to decision_function), regressors on predict against `variable`, using `sample` when given or
    16 rows of standard normal data otherwise. A model fitted on a DataFrame keeps its column names
    as the signature's `features`.

    A Pipeline that starts with a TfidfVectorizer or CountVectorizer takes text: one string per row,
    input BYTES [-1, 1]. Its check runs on `sample` (sentences) when given, else on 16 sentences made
    from the vectorizer's vocabulary with unknown words, punctuation and capitals.
    """
    _require_sklearn()
    from sklearn.base import BaseEstimator, is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(estimator, BaseEstimator):
        raise ConversionFailed(f"expected a fitted scikit-learn estimator, got {type(estimator).__name__}")
    name = type(estimator).__name__
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise ConversionFailed(f"estimator is not fitted: call {name}.fit() first") from None
    classifier = is_classifier(estimator)
    if not classifier and not is_regressor(estimator):
        raise ConversionFailed(f"{name} is neither a classifier nor a regressor")

    text = _text_vectorizer(estimator)
    if text is not None:
        x, source = _check_sentences(text, sample)
        initial_type = _string_type()
    else:
        x, source = _check_data(estimator, None if sample is None else np.asarray(sample))
        initial_type = _float_type(x.shape[1])
    onnx_bytes = _convert(estimator, initial_type, classifier, text)
    model = onnx.load_model_from_string(onnx_bytes)
    signature = signature_of(model)
    outputs = run_onnx(onnx_bytes, {signature.inputs[0].name: x})
    rows = x[:, 0].tolist() if text is not None else x  # a vectorizer takes a list of strings
    actual = dict(zip((spec.name for spec in signature.outputs), outputs, strict=True))

    scores: Scores | None = None
    labels: list[str] | None = None
    if classifier:
        labels = [str(c) for c in estimator.classes_]
        # skl2onnx names its outputs label then probabilities (decision scores without predict_proba)
        out = signature.outputs[-1].name
        if hasattr(estimator, "predict_proba"):
            expected = _predict(estimator.predict_proba, rows)
            scores = Scores(out, "probabilities")
        else:
            expected = _predict(estimator.decision_function, rows)
    else:
        out = signature.outputs[0].name
        expected = _predict(estimator.predict, rows)
    got = actual[out]
    if expected.size == got.size:
        expected = expected.reshape(got.shape)  # sklearn's [n] is ONNX's [n, 1]
    try:
        check = require_close({out: expected}, {out: got}, tolerance, len(x), source)
    except ConversionFailed as exc:
        if text is None:
            raise
        why = f"ONNX Runtime may split this text otherwise than {_split_by(text)}"
        raise ConversionFailed(f"{exc}: {why}") from None
    signature = signature_of(model, scores)
    names = getattr(estimator, "feature_names_in_", None)
    if text is None and names is not None:
        signature = dataclasses.replace(signature, features=tuple(str(name) for name in names))
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature,
        framework="sklearn",
        check=check,
        labels=labels,
    )


def from_file(
    path: str | Path,
    sample: Array | None = None,
    tolerance: float = 1e-4,
    *,
    trusted: bool = False,
    report: Report | None = None,
) -> Converted:
    """Load an estimator saved with skops (.skops) or joblib/pickle, then convert it as
    `from_estimator` does.

    A pickle runs code from the file when loaded, so it is scanned first and loaded only when
    `trusted`; a .skops file loads without running code, trusting scikit-learn, numpy and scipy
    types and, when `trusted`, the others it names. `report` receives what was trusted on the way.
    """
    _require_sklearn()
    from sklearn.base import BaseEstimator

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    if path.suffix.lower() == ".skops":
        estimator = _load_skops(path, trusted, report)
    else:
        estimator = pickles.load(path, trusted=trusted, report=report)
    if not isinstance(estimator, BaseEstimator):
        raise ConversionFailed(f"{path} holds a {type(estimator).__name__}, not a scikit-learn estimator")
    return from_estimator(estimator, sample=sample, tolerance=tolerance)


def _load_skops(path: Path, trusted: bool, report: Report | None) -> Any:
    """skops builds objects from a schema, never by running code from the file, except through the
    types it loads: those outside scikit-learn, numpy and scipy need the caller's trust."""
    try:
        import skops.io
    except ImportError:
        raise ConversionFailed(_MISSING_SKOPS) from None
    try:
        reported = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # a bad zip, a bad schema: skops raises many types
        raise ConversionFailed(f"{path.name} cannot be read with skops: {first_line(exc)}") from exc
    unknown = sorted(name for name in reported if not _library_type(name))
    if unknown and not trusted:
        raise ConversionFailed(
            f"{path.name} holds types outside scikit-learn, numpy and scipy, which skops would load: "
            f"{', '.join(unknown)}; pass --trust (trusted=True in Python) if you know this code"
        )
    if unknown and report is not None:
        report(f"{path.name} loads the types {', '.join(unknown)}; loading them because it is trusted")
    try:
        return skops.io.load(path, trusted=list(reported))
    except Exception as exc:  # whatever the stored objects' construction raises
        raise ConversionFailed(f"{path.name} cannot be loaded with skops: {first_line(exc)}") from exc


def _library_type(name: str) -> bool:
    """A type skops may load without trust: a scikit-learn class (an estimator, or the likes of the
    sklearn.tree._tree.Tree a forest holds), a numpy scalar type or dtype, or a scipy sparse matrix.
    Never a function (a FunctionTransformer calls its function on the data) and no other numpy or
    scipy class, which a model could call the same way (numpy.memmap opens files)."""
    module, _, attr = name.rpartition(".")
    root = module.split(".")[0]
    if root not in _LIBRARIES or not attr:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated submodules warn on import
            found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    if not isinstance(found, type):
        return False
    if root == "sklearn":
        return True
    if root == "numpy":
        return issubclass(found, np.generic | np.dtype)
    return module.startswith("scipy.sparse")


def _check_data(estimator: Any, sample: Array | None) -> tuple[Array, str]:
    n_features = getattr(estimator, "n_features_in_", None)
    if sample is None:
        if n_features is None:
            raise ConversionFailed(
                f"{type(estimator).__name__} does not say how many features it takes; pass a sample"
            )
        rng = np.random.default_rng(0)
        return rng.standard_normal((CHECK_ROWS, int(n_features))).astype(np.float32), GENERATED
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConversionFailed(f"sample must be a non-empty 2-D array, got shape {list(x.shape)}")
    if n_features is not None and x.shape[1] != n_features:
        raise ConversionFailed(f"sample has {x.shape[1]} features; the estimator was fitted on {n_features}")
    return x, USER_DATA


def _text_vectorizer(estimator: Any) -> Any | None:
    """The text vectorizer a Pipeline starts with; None for a model of numbers."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline):
        return None
    first = estimator.steps[0][1]
    if isinstance(first, HashingVectorizer):
        raise ConversionFailed(
            "skl2onnx cannot convert HashingVectorizer: use a TfidfVectorizer or CountVectorizer"
        )
    return first if isinstance(first, CountVectorizer) else None  # TfidfVectorizer is one too


def _check_sentences(vectorizer: Any, sample: Array | Sequence[str] | None) -> tuple[Array, str]:
    """The check's sentences as the ONNX input, [rows, 1] strings."""
    if sample is None:
        words = {word for key in vectorizer.vocabulary_ for word in str(key).split()}
        sentences, source = check_sentences(sorted(words), CHECK_ROWS), GENERATED
    else:
        given = np.asarray(sample, dtype=object).reshape(-1)
        if len(given) == 0 or not all(isinstance(item, str) for item in given):
            raise ConversionFailed("the sample of a text pipeline must be a non-empty list of strings")
        sentences, source = [str(item) for item in given], USER_DATA
    x = np.empty((len(sentences), 1), dtype=object)
    x[:, 0] = sentences
    return x, source


def _split_by(vectorizer: Any) -> str:
    if vectorizer.analyzer == "word":
        return f"token_pattern {vectorizer.token_pattern!r}"
    return f"analyzer {vectorizer.analyzer!r}"


def _float_type(n_features: int) -> Any:
    from skl2onnx.common.data_types import FloatTensorType

    return FloatTensorType([None, n_features])


def _string_type() -> Any:
    from skl2onnx.common.data_types import StringTensorType

    return StringTensorType([None, 1])


def _text_options(vectorizer: Any) -> dict[str, Any]:
    """skl2onnx's options for a vectorizer, so that ONNX Runtime splits and lowercases as it does."""
    if getattr(vectorizer, "sublinear_tf", False):
        raise ConversionFailed(
            "skl2onnx converts TfidfVectorizer(sublinear_tf=True) as log(1 + tf), where scikit-learn "
            "computes 1 + log(tf): refit with sublinear_tf=False"
        )
    options: dict[str, Any] = {"locale": TEXT_LOCALE}
    if vectorizer.analyzer == "word":
        pattern = str(vectorizer.token_pattern)
        # any other pattern as it is, but for (?u), which RE2 refuses: the check says if it splits alike
        options["tokenexp"] = TOKEN_PATTERNS.get(pattern, pattern.replace("(?u)", ""))
    return options


def _convert(estimator: Any, initial_type: Any, classifier: bool, text: Any | None = None) -> bytes:
    from skl2onnx import to_onnx

    initial_types = [(INPUT_NAME, initial_type)]
    # zipmap off: probabilities as a [batch, classes] tensor rather than a list of dicts
    attempts: list[dict[Any, Any] | None] = [{"zipmap": False}, None] if classifier else [None]
    if text is not None:
        # Options by step: a step without any makes skl2onnx give its classifier zipmap, which
        # converters without that option (LinearSVC) refuse.
        last, vectorizer = id(estimator.steps[-1][1]), {id(text): _text_options(text)}
        zipmap_off: dict[Any, Any] = {**vectorizer, last: {"zipmap": False}}
        attempts = [zipmap_off, {**vectorizer, last: {}}] if classifier else [vectorizer]
    for options in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skl2onnx reads deprecated sklearn attributes
                model = to_onnx(estimator, initial_types=initial_types, options=options, target_opset=OPSET)
            return bytes(model.SerializeToString())
        except NameError as exc:
            # converters without the zipmap option (LinearSVC, ...) reject it by name
            if options is attempts[-1] or "zipmap" not in str(exc):
                raise ConversionFailed(_cannot_convert(estimator, exc)) from exc
        except Exception as exc:  # skl2onnx raises its own types plus RuntimeError and friends
            raise ConversionFailed(_cannot_convert(estimator, exc)) from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _cannot_convert(estimator: Any, exc: BaseException) -> str:
    return f"skl2onnx cannot convert {type(estimator).__name__}: {first_line(exc)}"


def _predict(method: Any, x: Array | list[str]) -> Array:
    with warnings.catch_warnings():
        # fitted on a DataFrame, sklearn warns about the plain array; the values are the same
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return np.asarray(method(x))
