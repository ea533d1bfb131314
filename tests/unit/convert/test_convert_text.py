"""Text in: scikit-learn text pipelines with a string input, and a wordpiece tokenizer put in front of
a model of token ids (onnxruntime-extensions), each checked against the source on sentences."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shipyard.convert import from_estimator, run_onnx
from shipyard.convert.text import from_onnx, tokenizer_model, with_tokenizer
from shipyard.convert.wordpiece import check_sentences, read_vocab, wordpiece
from shipyard.errors import ConversionFailed, InvalidInput, NotFound
from shipyard.importing import import_file
from shipyard.registry import Registry
from shipyard.signature import Scores, TensorSpec
from tests.text_models import (
    CORPUS,
    SENTENCES,
    TOPICS,
    VOCAB,
    logits_of,
    plain_wordpiece,
    text_classifier,
    text_pipeline,
)

PROTOBUF_BACKEND = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


@pytest.fixture(autouse=True)
def _protobuf_backend_kept() -> Iterator[None]:
    """Importing onnxruntime-extensions (the first session of a tokenizer registers it) sets
    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python in os.environ: servers that later tests start would
    inherit pure-Python protobuf, on which the gRPC ModelConfig fails. Put back what was there (see
    test_registering_the_extensions_leaves_the_environment_alone)."""
    before = os.environ.get(PROTOBUF_BACKEND)
    yield
    if before is None:
        os.environ.pop(PROTOBUF_BACKEND, None)
    else:
        os.environ[PROTOBUF_BACKEND] = before


def _strings(sentences: list[str]) -> np.ndarray:
    column = np.empty((len(sentences), 1), dtype=object)
    column[:, 0] = sentences
    return column


def _fit(*steps: Any) -> Any:
    from sklearn.pipeline import make_pipeline

    texts, topics = zip(*CORPUS, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LinearSVC's and friends' convergence notes
        return make_pipeline(*steps).fit(texts, topics)


# scikit-learn text pipelines


@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2)])
def test_a_tfidf_pipeline_takes_sentences_and_gives_sklearns_probabilities(ngrams: tuple[int, int]) -> None:
    pipeline = text_pipeline(ngrams)

    converted = from_estimator(pipeline)

    assert converted.signature.inputs == (TensorSpec("input", "BYTES", (-1, 1)),)
    assert converted.signature.scores == Scores("probabilities", "probabilities")
    assert converted.signature.features is None
    assert converted.labels == TOPICS
    check = converted.check
    assert check.passed and check.source == "generated" and check.samples == 16
    assert check.max_abs_diff is not None and check.max_abs_diff < 1e-5
    # sentences it was not checked on: capitals, punctuation, accents, one-letter words, nothing at all
    labels, probabilities = run_onnx(converted.onnx_bytes, {"input": _strings(SENTENCES)})
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(SENTENCES), atol=1e-5)
    assert labels.tolist() == pipeline.predict(SENTENCES).tolist()


def test_count_vectorizer_and_a_classifier_without_probabilities() -> None:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.svm import LinearSVC

    counts = _fit(CountVectorizer(stop_words="english"), MultinomialNB())
    svc = _fit(TfidfVectorizer(lowercase=False), LinearSVC())

    assert from_estimator(counts).check.passed
    converted = from_estimator(svc)
    scores = run_onnx(converted.onnx_bytes, {"input": _strings(SENTENCES)})[1]
    np.testing.assert_allclose(scores, svc.decision_function(SENTENCES), atol=1e-5)


def test_given_sentences_are_the_check() -> None:
    check = from_estimator(text_pipeline(), sample=["Snow and rain", "PIZZA!"]).check

    assert check.source == "user data" and check.samples == 2


def test_text_pipelines_it_cannot_convert_faithfully_are_refused() -> None:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ConversionFailed, match="skl2onnx cannot convert HashingVectorizer"):
        from_estimator(_fit(HashingVectorizer(n_features=64), LogisticRegression()))
    with pytest.raises(ConversionFailed, match="sublinear_tf"):
        from_estimator(_fit(TfidfVectorizer(sublinear_tf=True), LogisticRegression()))
    with pytest.raises(
        ConversionFailed, match="sample of a text pipeline must be a non-empty list of strings"
    ):
        from_estimator(text_pipeline(), sample=np.zeros((3, 4)))


def test_a_model_fitted_on_a_dataframe_keeps_its_column_names(digits: tuple[np.ndarray, np.ndarray]) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = digits
    frame = pd.DataFrame(x[:300, :4], columns=["age", "height", "weight", "income"])
    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(frame, y[:300] % 2)
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x[:300, :4], y[:300] % 2)

    assert from_estimator(fitted).signature.features == ("age", "height", "weight", "income")
    assert from_estimator(plain).signature.features is None


def test_check_sentences_are_the_same_every_time_and_read_like_text() -> None:
    sentences = check_sentences(["pizza", "rain", "goal"], rows=16)

    assert sentences == check_sentences(["pizza", "rain", "goal"], rows=16) and len(sentences) == 16
    joined = " ".join(sentences)
    assert "pizza" in joined.lower() and any(c in joined for c in ",;:!?.")
    assert any(word[0].isupper() for word in joined.split())
    assert not {"pizza", "rain", "goal"} & set(sentences[-1].lower().strip(".!?").split())  # none known


# a wordpiece tokenizer in front of a model of token ids


@pytest.fixture(scope="module")
def classifier_onnx() -> bytes:
    return text_classifier()[1]


def test_the_tokenized_model_gives_the_models_logits_on_wordpiece_ids(classifier_onnx: bytes) -> None:
    sentences = ["This movie was GREAT, I loved it!", "Boring plot; the actors acted badly.", "it is fun"]

    composed = with_tokenizer(classifier_onnx, VOCAB, max_length=16)

    (logits,) = run_onnx(composed, {"text": _strings(sentences)})
    np.testing.assert_allclose(logits, logits_of(sentences, 16), atol=1e-5)
    graph = onnx.load_model_from_string(composed).graph
    assert [i.name for i in graph.input] == ["text"]
    assert any(node.op_type == "Loop" for node in graph.node)


def test_rows_are_padded_to_max_length_and_cut_there(classifier_onnx: bytes) -> None:
    """A row's answer is the same alone and beside a longer one; a long sentence is cut."""
    long = " ".join(["the movie was very good"] * 10)
    composed = with_tokenizer(classifier_onnx, VOCAB, max_length=12)

    alone = run_onnx(composed, {"text": _strings(["awful"])})[0]
    together = run_onnx(composed, {"text": _strings(["awful", long])})[0]

    np.testing.assert_allclose(together[:1], alone, atol=1e-6)
    np.testing.assert_allclose(together, logits_of(["awful", long], 12), atol=1e-5)
    assert len(plain_wordpiece(long, 12)) == 12


def test_from_onnx_records_the_check(classifier_onnx: bytes, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(classifier_onnx)

    converted = from_onnx(model, VOCAB, max_length=16)

    assert converted.signature.inputs == (TensorSpec("text", "BYTES", (-1, 1)),)
    assert converted.signature.scores == Scores("logits", "logits")
    check = converted.check
    assert check.passed and check.source == "generated" and check.samples == 16
    assert check.max_abs_diff is not None and check.max_abs_diff < 1e-5


def test_token_types_and_int32_ids_and_the_models_fixed_length() -> None:
    """A model of INT32 ids, a FLOAT mask and token types, its sequence axis fixed at 8: the ids are
    cast, the mask too, types are zeros, and max_length defaults to the model's 8."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["token_type_ids"], ["types_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["ids_f", "attention_mask"], ["kept"]),
            helper.make_node("Add", ["kept", "types_f"], ["summed"]),
            helper.make_node("Concat", ["summed", "attention_mask"], ["scores"], axis=1),
        ],
        "ids",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", 8]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", 8]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    converted = from_onnx(model.SerializeToString(), VOCAB)

    (scores,) = run_onnx(converted.onnx_bytes, {"text": _strings(["the film", "a"])})
    index = {token: i for i, token in enumerate(VOCAB)}
    assert scores[0, :8].tolist() == [index[t] for t in ("[CLS]", "the", "film", "[SEP]")] + [0] * 4
    assert scores[1, 8:].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(ConversionFailed, match="takes sequences of 8 tokens, not max_length 16"):
        with_tokenizer(model.SerializeToString(), VOCAB, max_length=16)


def test_shipyards_wordpiece_splits_as_the_op_does() -> None:
    """Random strings of letters, punctuation, accents, CJK, control and odd spaces, tokenized by the
    op in the graph and by `wordpiece`, cased and uncased."""
    vocab = [*VOCAB, "é", "##é", "中", "cafe", "$"]
    index = {token: i for i, token in enumerate(vocab)}
    alphabet = list("the movie act ing.,!?'-$ \t\n") + list(
        "éÉß中文\u0301\xa0\u2003\x00\x07\ufffd\u200bİ😀¿«_^\uff21"
    )
    rng = np.random.default_rng(7)
    sentences = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 14)))) for _ in range(150)]
    sentences += ["thex", "acting", "movies", "x" * 120]
    for lowercase in (True, False):
        tokenizer = tokenizer_model(vocab, max_length=24, lowercase=lowercase)
        got = run_onnx(tokenizer, {"text": _strings(sentences)})[0]
        want = [wordpiece(s, index, lowercase, 24) for s in sentences]
        assert [row[row != 0].tolist() for row in got] == want


def test_a_word_whose_end_is_unknown_keeps_its_first_pieces() -> None:
    """Where Hugging Face's BertTokenizer gives one [UNK] for the word, the op keeps "the"."""
    index = {token: i for i, token in enumerate(VOCAB)}

    assert wordpiece("thex", index, True, 8) == [index[t] for t in ("[CLS]", "the", "[UNK]", "[SEP]")]


# what is refused


def test_bad_vocabularies_are_refused(tmp_path: Path, classifier_onnx: bytes) -> None:
    empty, latin1, blank = tmp_path / "empty.txt", tmp_path / "latin1.txt", tmp_path / "blank.txt"
    empty.write_text("")
    latin1.write_bytes("\n".join([*VOCAB, "café"]).encode("latin-1"))
    blank.write_text("\n".join([*VOCAB[:7], "", *VOCAB[7:]]))

    with pytest.raises(InvalidInput, match=r"vocabulary file .*empty.txt is empty"):
        with_tokenizer(classifier_onnx, empty)
    with pytest.raises(InvalidInput, match=r"vocabulary file .*latin1.txt is not UTF-8 text"):
        with_tokenizer(classifier_onnx, latin1)
    with pytest.raises(InvalidInput, match="line 8 is blank"):
        read_vocab(blank)
    with pytest.raises(NotFound, match="no such vocabulary file"):
        read_vocab(tmp_path / "missing.txt")
    with pytest.raises(InvalidInput, match=r"lacks BERT's special tokens \[MASK\]"):
        read_vocab([t for t in VOCAB if t != "[MASK]"])
    with pytest.raises(InvalidInput, match="'the' is on lines 12 and 41"):
        read_vocab([*VOCAB, "the"])


def test_a_model_whose_input_is_not_token_ids_is_refused(tmp_path: Path) -> None:
    def model(*inputs: onnx.ValueInfoProto) -> bytes:
        nodes = [helper.make_node("Identity", [inputs[0].name], ["out"])]
        out = helper.make_tensor_value_info("out", inputs[0].type.tensor_type.elem_type, None)
        graph = helper.make_graph(nodes, "g", list(inputs), [out])
        return bytes(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        )

    floats = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    flat = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch"])
    other = helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"])

    with pytest.raises(ConversionFailed, match="input 'pixels' takes FLOAT, not token ids"):
        with_tokenizer(model(floats), VOCAB)
    with pytest.raises(ConversionFailed, match=r"has 1 axes: token ids come as \[batch, sequence\]"):
        with_tokenizer(model(flat), VOCAB)
    with pytest.raises(ConversionFailed, match="input 'position_ids' is none of input_ids"):
        with_tokenizer(model(ids, other), VOCAB)
    with pytest.raises(ConversionFailed, match="not a valid ONNX model"):
        with_tokenizer(b"\x08\x07garbage", VOCAB)


def test_import_file_puts_the_tokenizer_in_front(
    classifier_onnx: bytes, tmp_path: Path, registry: Registry
) -> None:
    model, vocab = tmp_path / "model.onnx", tmp_path / "vocab.txt"
    model.write_bytes(classifier_onnx)
    vocab.write_text("\n".join(VOCAB) + "\n")

    record = import_file(model, name="reviews", tokenizer=vocab, max_length=16, registry=registry)

    assert record.signature.inputs == (TensorSpec("text", "BYTES", (-1, 1)),)
    assert record.check["passed"] and record.check["max_abs_diff"] < 1e-5
    with pytest.raises(InvalidInput, match="--max-length is the tokenizer's"):
        import_file(model, name="reviews", max_length=16, registry=registry)
    with pytest.raises(InvalidInput, match="--tokenizer goes in front of an ONNX model"):
        import_file(model, name="reviews", framework="sklearn", tokenizer=vocab, registry=registry)


def test_registering_the_extensions_leaves_the_environment_alone() -> None:
    code = (
        "import os, onnxruntime as ort\n"
        "from shipyard import customops\n"
        "customops.register(ort.SessionOptions(), customops.DOMAIN.encode(), 'x')\n"
        f"print(os.environ.get({PROTOBUF_BACKEND!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k != PROTOBUF_BACKEND}
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)

    assert ran.stdout.strip() == "None"
