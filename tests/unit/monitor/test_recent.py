"""The recent-predictions index that feedback uses: bounded, newest kept, safe across threads."""

from __future__ import annotations

import threading

import pytest

from shipyard.monitor.recent import RecentPrediction, RecentPredictions


def test_lookup_finds_what_was_added() -> None:
    recent = RecentPredictions()
    recent.add("r1", "digits", 2, "7")
    recent.add("r2", "digits", 3, None)
    assert recent.lookup("r1") == RecentPrediction("digits", 2, "7")
    found = recent.lookup("r2")
    assert found is not None and (found.model, found.version, found.class_) == ("digits", 3, None)
    assert recent.lookup("unknown") is None


def test_the_oldest_entries_are_evicted_and_a_repeated_id_counts_as_new() -> None:
    recent = RecentPredictions(capacity=3)
    for i in range(3):
        recent.add(f"r{i}", "m", 1, str(i))
    recent.add("r0", "m", 2, "again")  # r0 is now the newest
    recent.add("r3", "m", 1, "3")  # evicts r1, the oldest
    assert len(recent) == 3
    assert recent.lookup("r1") is None
    assert recent.lookup("r0") == RecentPrediction("m", 2, "again")
    assert [recent.lookup(k) is not None for k in ("r2", "r3")] == [True, True]


def test_concurrent_adds_keep_the_bound() -> None:
    recent = RecentPredictions(capacity=1000)
    barrier = threading.Barrier(4)

    def fill(worker: int) -> None:
        barrier.wait()
        for i in range(5000):
            recent.add(f"{worker}-{i}", "m", worker, None)

    threads = [threading.Thread(target=fill, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(recent) == 1000
    kept = [f"{w}-{i}" for w in range(4) for i in range(5000) if recent.lookup(f"{w}-{i}") is not None]
    assert len(kept) == 1000
    assert all(recent.lookup(k) == RecentPrediction("m", int(k.split("-")[0]), None) for k in kept)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentPredictions(capacity=0)


def test_a_class_stored_as_scores_is_read_only_when_looked_up() -> None:
    read: list[object] = []

    def reader(scores: object) -> str | None:
        read.append(scores)
        return None if scores is None else f"class of {scores}"

    recent = RecentPredictions()
    recent.add_all(["a", "b"], "digits", 1, ["scores-a", None], reader)
    assert read == []
    assert recent.lookup("a") == RecentPrediction("digits", 1, "class of scores-a")
    assert recent.lookup("b") == RecentPrediction("digits", 1, None)
    assert read == ["scores-a", None]


def test_eviction_keeps_exactly_the_latest_whether_or_not_they_were_looked_up() -> None:
    recent = RecentPredictions(capacity=4)
    recent.add_all(["a0", "a1", "a2"], "m", 1, ["0", "1", "2"])
    assert recent.lookup("a1") == RecentPrediction("m", 1, "1")  # indexed from here on
    recent.add_all(["b0", "b1", "b2"], "m", 2, ["3", "4", "5"])  # evicts a0 and a1
    assert len(recent) == 4
    assert [recent.lookup(k) is None for k in ("a0", "a1", "a2", "b0", "b1", "b2")] == [
        True, True, False, False, False, False,
    ]  # fmt: skip
    recent.add_all(["b1", "c0", "c1", "c2", "c3", "c4"], "m", 3, list("xyzuvw"))  # more than it holds
    assert len(recent) == 4
    assert recent.lookup("b1") is None and recent.lookup("b2") is None
    assert recent.lookup("c1") == RecentPrediction("m", 3, "z") and recent.lookup("c4") is not None
