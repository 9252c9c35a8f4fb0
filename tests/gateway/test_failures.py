"""Failures as public errors, and how each kind is logged: an unexpected one as an error
with its traceback, a known outage as one warning line, a client's own error not at all."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from promptpix.gateway import errors as err
from promptpix.gateway.failures import answer_for
from promptpix.generators.base import AllGeneratorsFailed


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (AllGeneratorsFailed(["gemini"], ["503"]), 503, "generators_failed"),
        (sqlite3.OperationalError("database is locked"), 503, "database_unavailable"),
        (TimeoutError(), 504, "generation_timeout"),
    ],
)
def test_a_known_outage_is_one_warning_line(
    caplog: pytest.LogCaptureFixture, failure: BaseException, status: int, code: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger="promptpix"):
        mapped = answer_for(failure)
    assert (mapped.status, mapped.code) == (status, code)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].exc_info is None
    assert code in caplog.records[0].getMessage()


def test_an_unexpected_failure_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("a bug")
    except KeyError as exc:
        with caplog.at_level(logging.DEBUG, logger="promptpix"):
            mapped = answer_for(exc)
    assert (mapped.status, mapped.code) == (500, "internal_error")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert caplog.records[0].exc_info is not None


def test_a_clients_error_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="promptpix"):
        mapped = answer_for(err.BadParameter("'w' must be 1..4096", param="w"))
    assert mapped.status == 400
    assert caplog.records == []
