"""The router alone: which version answers a request, from what the server serves."""

from __future__ import annotations

import hashlib

import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.rollout.router import Split, route, sticky_point

SERVED = {1, 2, 5}


@pytest.mark.parametrize("asked", [None, ""])
def test_a_request_that_names_no_version_gets_the_default(asked: str | None) -> None:
    assert route("digits", asked, 2, SERVED) == 2


@pytest.mark.parametrize("asked", ["5", 5, "1"])
def test_a_request_that_names_a_served_version_gets_it(asked: str | int) -> None:
    assert route("digits", asked, 2, SERVED) == int(asked)


@pytest.mark.parametrize("asked", ["two", "-1", "1.0", "\u0661", " 1"])
def test_a_version_that_is_not_a_number_is_not_found(asked: str) -> None:
    with pytest.raises(NotFound, match="versions are numbers"):
        route("digits", asked, 2, SERVED)


def test_a_version_the_server_does_not_serve_is_not_found() -> None:
    with pytest.raises(NotFound, match="'digits' has no version 3 served here"):
        route("digits", "3", 2, SERVED)


# -- traffic splits ----------------------------------------------------------------------------------


def test_a_split_gives_the_default_what_the_others_leave() -> None:
    split = Split.of({2: 20}, rest_to=1)
    assert split.shares == ((1, 80.0), (2, 20.0))
    assert str(split) == "1=80%, 2=20%"
    assert Split.from_dict(split.to_dict()) == split


def test_a_version_at_zero_percent_takes_no_traffic() -> None:
    assert Split.of({1: 100, 2: 0}).versions == (1,)


@pytest.mark.parametrize(
    ("shares", "problem"),
    [
        ({}, "at least one"),
        ({1: 50, 2: 30}, "add up to 80%"),
        ({1: 80, 2: 30}, "add up to 110%"),
        ({2: 120}, "from 0 to 100"),
        ({2: -5}, "from 0 to 100"),
        ({2: "20"}, "from 0 to 100"),
        ({2: True}, "from 0 to 100"),
        ({v: 10 for v in range(1, 11)}, "at most 8 versions"),
    ],
)
def test_a_split_that_is_not_whole_percentages_is_refused(shares: dict[int, object], problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        Split.of(shares)  # type: ignore[arg-type]


def test_the_newest_version_takes_the_top_of_the_range_so_a_growing_share_keeps_its_keys() -> None:
    split = Split.of({1: 75, 2: 25})
    assert [split.pick(p) for p in (0.0, 0.7499, 0.75, 0.9999)] == [1, 1, 2, 2]
    keys = [f"user-{i}" for i in range(2000)]
    at_5 = {k for k in keys if route("d", None, 1, {1, 2}, Split.of({2: 5}, 1), sticky_point(k)) == 2}
    at_25 = {k for k in keys if route("d", None, 1, {1, 2}, Split.of({2: 25}, 1), sticky_point(k)) == 2}
    assert at_5 < at_25
    assert 0.03 < len(at_5) / len(keys) < 0.07 and 0.22 < len(at_25) / len(keys) < 0.28


def test_a_key_falls_on_the_same_point_in_every_process() -> None:
    # blake2b of the key's bytes: fixed across processes and machines (Python's hash() is not)
    assert sticky_point("user-42") == sticky_point("user-42")
    assert 0 <= sticky_point("") < 1 and 0 <= sticky_point("\udcff") < 1
    digest = hashlib.blake2b(b"user-42", digest_size=8).digest()
    assert sticky_point("user-42") == int.from_bytes(digest, "big") / 2**64


def test_a_request_that_names_a_version_is_not_split() -> None:
    split = Split.of({1: 50, 2: 50})
    assert route("digits", "1", 2, {1, 2}, split, 0.99) == 1
    assert route("digits", None, 2, {1, 2}, split, 0.99) == 2
    assert route("digits", None, 2, {1, 2}, split, 0.0) == 1
