"""The router alone: which version answers a request, from what the server serves."""

from __future__ import annotations

import pytest

from shipyard.errors import NotFound
from shipyard.rollout.router import route

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
