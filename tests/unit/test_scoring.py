"""Reading class scores, alone: softmax, the predicted class, its confidence and label, and the top k;
the batch reading and the one-row reading agree, and what is read once can be handed on."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.protocol.predict import predictions as friendly_predictions
from shipyard.scoring import (
    ClassOf,
    best,
    is_class_scores,
    label,
    predictions,
    read,
    read_row,
    softmax,
    top,
    top_indexes,
)
from shipyard.signature import ScoreKind

LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0], [1.0, 4.0, 4.0]], dtype=np.float32)


def test_softmax_gives_rows_of_probabilities_even_for_huge_logits() -> None:
    probs = softmax(np.array([[1000.0, 0.0, 1000.0], [-5.0, 0.0, 5.0]]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [0.5, 0.0, 0.5])
    assert np.all(np.diff(probs[1]) > 0)


def test_logits_are_read_through_softmax_and_probabilities_as_they_are() -> None:
    scored = read(LOGITS, "logits")
    expected = np.exp(LOGITS.astype(np.float64))
    expected /= expected.sum(axis=1, keepdims=True)
    assert scored.kind == "logits" and scored.probabilities.dtype == np.float64
    np.testing.assert_allclose(scored.probabilities, expected)
    assert scored.predicted.tolist() == [0, 2, 1]  # a tie goes to the lower index
    np.testing.assert_allclose(scored.confidence, expected.max(axis=1))
    as_given = read(expected, "probabilities")
    np.testing.assert_array_equal(as_given.probabilities, expected)
    np.testing.assert_array_equal(as_given.predicted, scored.predicted)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_one_row_in_plain_python_reads_as_the_batch_does(kind: ScoreKind) -> None:
    rows = LOGITS if kind == "logits" else softmax(LOGITS.astype(np.float64))
    scored = read(rows, kind)
    for i, row in enumerate(rows.tolist()):
        found = read_row(row, kind)
        assert found is not None
        best, confidence = found
        assert best == scored.predicted[i]
        assert confidence == pytest.approx(scored.confidence[i], rel=1e-12)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_the_best_class_alone_reads_as_the_whole_batch_does(kind: ScoreKind) -> None:
    rows = np.random.default_rng(0).normal(0, 8, (500, 10)).astype(np.float32)
    rows = rows if kind == "logits" else softmax(rows.astype(np.float64))
    scored = read(rows, kind)
    predicted, confidence = best(rows, kind)
    np.testing.assert_array_equal(predicted, scored.predicted)
    np.testing.assert_allclose(confidence, scored.confidence, rtol=1e-6)
    assert best(LOGITS, "logits")[0].tolist() == [0, 2, 1]  # a tie to the lower index, as read()


def test_a_row_that_is_empty_or_not_finite_has_no_prediction() -> None:
    assert read_row([], "logits") is None
    assert read_row([1.0, float("nan")], "logits") is None
    assert read_row([float("inf"), 0.0], "probabilities") is None


def test_predictions_are_labelled_and_a_row_that_cannot_say_is_none() -> None:
    labels = ["cat", "dog"]  # fewer labels than classes: the third is named by its index
    assert predictions(LOGITS[2:], "logits", labels) == [("dog", pytest.approx(0.4878555))]
    assert predictions(np.array([[np.nan, 1.0]]), "logits", labels) == [(None, None)]
    many = predictions(LOGITS, "logits", labels)
    assert [c for c, _ in many] == ["cat", "2", "dog"]
    with_nan = predictions(np.array([[0.2, 0.8], [np.nan, 0.5]]), "probabilities", None)
    assert with_nan == [("1", 0.8), ("0", None)]  # in a batch, the class stays; the confidence goes


def test_top_k_is_highest_first_ties_to_the_lower_index() -> None:
    assert top(LOGITS, 2).tolist() == [[0, 2], [2, 0], [1, 2]]
    assert top(LOGITS[0], 5).tolist() == [0, 2, 1]  # k beyond the classes: all of them
    assert label(1, ["a", "b"]) == "b" and label(1, None) == "1" and label(2, ["a", "b"]) == "2"


def test_what_reads_as_class_scores() -> None:
    assert is_class_scores(np.zeros((4, 3), np.float32))
    assert is_class_scores(np.zeros((4, 1, 2)))
    assert not is_class_scores(np.zeros((4, 1)))  # one value per sample: a regressor
    assert not is_class_scores(np.zeros(4))
    assert not is_class_scores(np.zeros((4, 3), np.int64))


def test_the_friendly_api_takes_scores_read_once_and_answers_the_same() -> None:
    labels = ["a", "b", "c"]
    own = friendly_predictions(LOGITS, kind="logits", labels=labels, top_k=2)
    handed = friendly_predictions(
        LOGITS, kind="logits", labels=labels, top_k=2, scored=read(LOGITS, "logits")
    )
    assert handed == own
    assert own[2] == {
        "class": "b",
        "confidence": round(float(read(LOGITS, "logits").confidence[2]), 6),
        "top_k": [{"class": "b", "confidence": own[2]["confidence"]}, {"class": "c", "confidence": 0.487856}],
    }


ROWS = [
    np.array([[0.1, 0.7, 0.2]], dtype=np.float32),  # a one-row answer
    np.array([2.0, -1.0, 0.5]),  # a row of a larger answer
    np.array([[0.3, np.nan, 0.2]], dtype=np.float32),  # a score that is not finite
    np.array([[4, 9]], dtype=np.int64),  # not scores
    np.array([[0.9]], dtype=np.float32),  # one value: a regression
    None,
    np.array([[0.2, 0.1, 0.7]], dtype=np.float32),
]
"""Rows of answers as the monitor keeps them: rows of class scores among others that are not."""


def test_top_indexes_read_a_batch_and_name_no_class_for_a_row_not_finite() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [2.0, -1.0, 0.5], [0.3, np.nan, 0.2], [0.2, 0.1, 0.7]])
    assert top_indexes(scores) == [1, 0, None, 2]
    assert top_indexes(np.empty((0, 3))) == []


def test_the_log_reads_a_flush_of_rows_at_once_as_each_row_alone() -> None:
    class_of = ClassOf("logits", ["a", "b", "c"])
    alone = [
        (None, None)
        if row is None or not is_class_scores(row.reshape(1, -1))
        else predictions(row.reshape(1, -1), "logits", ["a", "b", "c"])[0]
        for row in ROWS
    ]
    together = class_of.read_all(ROWS)
    assert [c for c, _ in together] == [c for c, _ in alone] == ["b", "a", None, None, None, None, "c"]
    assert [p for _, p in together] == pytest.approx([p for _, p in alone])
    assert class_of.read_all([]) == []
