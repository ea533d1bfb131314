"""What a caller is told of a failure, and what is logged, the same for HTTP and gRPC."""

from __future__ import annotations

import logging

import pytest

from shipyard.errors import (
    CLIENT_GONE,
    ClientGone,
    CorruptArtifact,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    Overloaded,
    RateLimited,
    status_of,
)
from shipyard.server.failures import INTERNAL, failure


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("bad"), 400),
        (NotFound("gone"), 404),
        (Overloaded("busy", 3), 503),
        (DeadlineExceeded("slow"), 504),
        (ClientGone(), CLIENT_GONE),
        (KeyError("secret/path"), 500),
    ],
)
def test_status_of(error: BaseException, status: int) -> None:
    assert status_of(error) == status


def test_the_callers_mistakes_and_refusals_are_answered_without_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shipyard.server")
    assert failure(InvalidInput("bad shape")) == (400, "bad shape", None)
    assert failure(RateLimited("slow down", 7)) == (429, "slow down", 7)
    assert failure(Overloaded("busy", 2)) == (503, "busy", 2)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_server_faults_are_logged_once_and_say_nothing_of_the_insides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shipyard.server")
    try:
        {}["/srv/models/secret"]
    except KeyError as exc:
        assert failure(exc) == (500, INTERNAL, None)
    assert failure(DeadlineExceeded("no answer in 2 s")).status == 504
    assert failure(CorruptArtifact("digits:1 is corrupt")).message == "digits:1 is corrupt"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.exc_info is not None for r in errors] == [True, False, False]  # a traceback for the unknown
    assert failure(ClientGone()).status == CLIENT_GONE
    assert caplog.records[-1].levelno == logging.DEBUG
