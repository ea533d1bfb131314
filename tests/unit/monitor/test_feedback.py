"""Feedback that can be trusted: one label per prediction id, labels the answering version can have,
ids found in memory or in the prediction log's files, and nothing recorded from a refused batch."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from shipyard.config import MonitorSettings
from shipyard.errors import InvalidInput, NotFound
from shipyard.monitor.feedback import Label, class_names, decode_feedback, read_label
from shipyard.monitor.live import Monitor
from shipyard.registry import Registry, VersionRecord
from shipyard.signature import Signature
from tests.conftest import register_digits
from tests.models import digits_data, digits_linear
from tests.unit.monitor.answering import answer as answer_one


@pytest.fixture
def digits(registry: Registry) -> VersionRecord:
    return register_digits(registry)


def answer(monitor: Monitor, record: VersionRecord, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """Answer `rows` as the data plane does; the prediction ids and the predicted classes."""
    logits = digits_linear().logits(rows)
    ids = answer_one(monitor, record, {"input": rows}, logits)
    return ids, [str(c) for c in logits.argmax(axis=1)]


def figures(monitor: Monitor, record: VersionRecord) -> dict[str, object]:
    return monitor.version(record).summary("ready", True, {})["accuracy"]


def metric(monitor: Monitor, name: str, outcome: str) -> float | None:
    labels = {"model": "digits", "version": "1", "outcome": outcome}
    return monitor.metrics.registry.get_sample_value(name, labels)


def test_prediction_ids_are_made_by_the_server_and_unguessable(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings())
    (one,), _ = answer(monitor, digits, digits_data()[0][:1])
    many, _ = answer(monitor, digits, digits_data()[0][:3])
    assert len(one) == 32 and int(one, 16) >= 0  # uuid4 hex: 128 bits
    root = many[0].rsplit("-", 1)[0]
    assert many == [f"{root}-0", f"{root}-1", f"{root}-2"] and root != one


def test_eleven_thousand_labels_for_one_id_count_once(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings())
    (prediction,), (predicted,) = answer(monitor, digits, digits_data()[0][:1])
    wrong = str((int(predicted) + 1) % 10)
    for i in range(11_000):
        assert monitor.feedback("digits", [(prediction, wrong if i % 2 else predicted)]) == {"accepted": 1}
    assert figures(monitor, digits) == {"value": 0.0, "labelled": 1, "window": 1, "replaced": 10_999}
    assert metric(monitor, "shipyard_feedback_total", "new") == 1
    assert metric(monitor, "shipyard_feedback_total", "replaced") == 10_999


def test_a_replaced_label_moves_its_prediction_from_correct_to_wrong(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings())
    ids, predicted = answer(monitor, digits, digits_data()[0][:4])
    monitor.feedback("digits", list(zip(ids, predicted, strict=True)))  # all right
    monitor.tick({})
    assert figures(monitor, digits)["value"] == 1.0
    assert metric(monitor, "shipyard_feedback_labelled", "correct") == 4
    monitor.feedback("digits", [(ids[0], str((int(predicted[0]) + 1) % 10))])
    monitor.tick({})
    assert figures(monitor, digits) == {"value": 0.75, "labelled": 4, "window": 4, "replaced": 1}
    assert metric(monitor, "shipyard_feedback_labelled", "correct") == 3
    assert metric(monitor, "shipyard_feedback_labelled", "wrong") == 1


def test_the_window_keeps_the_latest_labelled_ids(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings(accuracy_window=3))
    ids, predicted = answer(monitor, digits, digits_data()[0][:5])
    wrong = [str((int(p) + 1) % 10) for p in predicted]
    monitor.feedback("digits", [(ids[0], wrong[0]), (ids[1], wrong[1])])
    monitor.feedback("digits", list(zip(ids[2:], predicted[2:], strict=True)))  # the two wrong ones leave
    assert figures(monitor, digits) == {"value": 1.0, "labelled": 5, "window": 3, "replaced": 0}


def test_labels_must_be_the_models_classes_and_a_bad_batch_records_nothing(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings())
    ids, predicted = answer(monitor, digits, digits_data()[0][:2])
    for bad in ["cat", "10", 10, -1, 7.0, "07x"]:
        with pytest.raises(InvalidInput, match="not one of the model's classes") as caught:
            monitor.feedback("digits", [(ids[0], predicted[0]), (ids[1], bad)])
        assert repr(bad) in caught.value.message and "'0', '1'" in caught.value.message
        assert "feedback item 1" in caught.value.message and "nothing was recorded" in caught.value.message
    assert (
        figures(monitor, digits)["labelled"] == 0
        and metric(monitor, "shipyard_feedback_total", "new") is None
    )


def test_a_class_index_names_its_label(digits: VersionRecord) -> None:
    named = dataclasses.replace(digits, labels=[f"digit {i}" for i in range(10)])
    monitor = Monitor(MonitorSettings())
    rows = digits_data()[0][:1]
    (prediction,) = answer_one(monitor, named, {"input": rows}, digits_linear().logits(rows))
    index = int(digits_linear().logits(rows).argmax())
    monitor.feedback("digits", [(prediction, index)])
    assert figures(monitor, named)["value"] == 1.0
    monitor.feedback("digits", [(prediction, f"digit {(index + 1) % 10}")])  # or the label itself
    assert figures(monitor, named)["value"] == 0.0


def test_a_label_that_is_also_a_number_is_read_as_the_label_first() -> None:
    classes = ["1", "0"]
    assert read_label(0, classes) == "0" and read_label("1", classes) == "1"  # not the index
    assert read_label(1, ["a", "b"]) == "b" and read_label("1", ["a", "b"]) == "b"
    assert read_label(123, []) == "123"  # a classifier whose class count is unknown takes any index


def test_many_labels_are_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        read_label("nope", [f"class {i}" for i in range(1000)])
    message = caught.value.message
    assert "'class 9', ... (1000 in all)" in message and "'class 10'" not in message
    assert "index from 0 to 999" in message


def test_a_regressor_takes_numbers_and_counts_them(digits: VersionRecord) -> None:
    regressor = dataclasses.replace(
        digits, labels=None, signature=Signature(digits.signature.inputs, digits.signature.outputs)
    )
    assert class_names(regressor) is None
    monitor = Monitor(MonitorSettings())
    rows = digits_data()[0][:3]
    ids = answer_one(monitor, regressor, {"input": rows}, None)
    assert monitor.feedback("digits", [(ids[0], 3.5), (ids[1], "2.25"), (ids[2], 7)]) == {"accepted": 3}
    assert figures(monitor, regressor) == {"value": None, "labelled": 3, "window": 0, "replaced": 0}
    for bad in ["seven", "nan", "inf"]:
        with pytest.raises(InvalidInput, match="is not a number"):
            monitor.feedback("digits", [(ids[0], bad)])


def test_a_prediction_answered_without_scores_is_counted_not_judged(digits: VersionRecord) -> None:
    """A request that asked for other outputs than the scores: no predicted class to compare with."""
    monitor = Monitor(MonitorSettings())
    (prediction,) = answer_one(monitor, digits, {"input": digits_data()[0][:1]}, None)
    with pytest.raises(InvalidInput, match="'cat'"):  # the label must still be one of the classes
        monitor.feedback("digits", [(prediction, "cat")])
    monitor.feedback("digits", [(prediction, "3")])
    assert figures(monitor, digits) == {"value": None, "labelled": 1, "window": 0, "replaced": 0}


def test_unknown_ids_and_other_models_ids_are_not_found(registry: Registry, digits: VersionRecord) -> None:
    other = register_digits(registry, "other")
    monitor = Monitor(MonitorSettings())
    ids, predicted = answer(monitor, other, digits_data()[0][:1])
    mine, mine_predicted = answer(monitor, digits, digits_data()[0][:1])
    for request in ([("nope", "1")], [(ids[0], predicted[0])], [(mine[0], mine_predicted[0]), ("nope", "1")]):
        with pytest.raises(NotFound, match="nothing was recorded"):
            monitor.feedback("digits", request)
    assert figures(monitor, digits)["labelled"] == 0 and figures(monitor, other)["labelled"] == 0


def test_feedback_goes_to_the_version_that_answered(registry: Registry, digits: VersionRecord) -> None:
    second = register_digits(registry)
    assert second.number == 2
    monitor = Monitor(MonitorSettings())
    ids, predicted = answer(monitor, digits, digits_data()[0][:1])
    monitor.feedback("digits", [(ids[0], predicted[0])])
    assert figures(monitor, digits)["labelled"] == 1 and figures(monitor, second)["labelled"] == 0


def test_an_id_that_left_memory_is_found_in_the_log(digits: VersionRecord, tmp_path: Path) -> None:
    monitor = Monitor(MonitorSettings(), str(tmp_path / "log"), recent_capacity=2)
    monitor.start()
    ids, predicted = answer(monitor, digits, digits_data()[0][:6])
    monitor.flush()
    assert monitor.recent.lookup(ids[5]) is not None
    assert monitor.recent.lookup(ids[0]) is None  # evicted: only the last two are in memory
    monitor.close()  # the writer flushes and closes its files
    wrong = str((int(predicted[1]) + 1) % 10)
    assert monitor.feedback("digits", [(ids[0], predicted[0]), (ids[1], wrong), (ids[5], predicted[5])]) == {
        "accepted": 3
    }
    assert figures(monitor, digits) == {"value": 2 / 3, "labelled": 3, "window": 3, "replaced": 0}
    with pytest.raises(NotFound, match="'nope'"):
        monitor.feedback("digits", [(ids[2], predicted[2]), ("nope", "1")])


def test_a_version_this_process_never_watched_is_judged_from_the_record(
    digits: VersionRecord, tmp_path: Path
) -> None:
    """Another process answered (a worker sharing the log folder, or a server since restarted)."""
    answering = Monitor(MonitorSettings(), str(tmp_path / "log"))
    answering.start()
    ids, predicted = answer(answering, digits, digits_data()[0][:1])
    answering.close()
    monitor = Monitor(MonitorSettings(), str(tmp_path / "log"))
    with pytest.raises(NotFound, match="digits:1, which this server does not serve"):
        monitor.feedback("digits", [(ids[0], predicted[0])])
    assert monitor.feedback("digits", [(ids[0], predicted[0])], {1: digits}) == {"accepted": 1}
    assert figures(monitor, digits)["value"] == 1.0


def test_feedback_from_worker_threads_while_the_loop_reads(digits: VersionRecord) -> None:
    monitor = Monitor(MonitorSettings(accuracy_window=10_000))
    ids, predicted = answer(monitor, digits, digits_data()[0][:800])
    start = threading.Barrier(5)
    reads: list[object] = []

    def post(part: int) -> None:
        start.wait()
        for i in range(part, len(ids), 4):
            monitor.feedback("digits", [(ids[i], predicted[i])])
            monitor.feedback("digits", [(ids[i], predicted[i])])  # and again: replaced, not added

    threads = [threading.Thread(target=post, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        reads.append(figures(monitor, digits)["value"])
        monitor.tick({})
    for thread in threads:
        thread.join()
    assert figures(monitor, digits) == {"value": 1.0, "labelled": 800, "window": 800, "replaced": 800}
    assert set(reads) <= {None, 1.0}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"id": "a", "label": "7"}', [("a", "7")]),
        (b'[{"id": "a", "label": 7}, {"id": "b", "label": 2.5}]', [("a", 7), ("b", 2.5)]),
    ],
)
def test_bodies_keep_labels_as_sent(body: bytes, expected: list[tuple[str, Label]]) -> None:
    assert decode_feedback(body) == expected


def test_bodies_refuse_labels_that_are_not_text_or_numbers() -> None:
    for label in ("true", "null", "[1]"):
        with pytest.raises(InvalidInput, match="label must be"):
            decode_feedback(b'{"id": "a", "label": ' + label.encode() + b"}")
