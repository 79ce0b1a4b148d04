"""A provider's deliberate failure is formatted the way Pulumi's dynamic-provider host formats it
(``traceback.format_exc()``): as its words; a bug keeps its traceback."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator

import pytest

from fetchml_infra.outcome import one_line
from fetchml_infra.provider_errors import Refused, reported


@reported(KeyError)
def fails(exc: Exception) -> None:
    raise exc


def as_the_host_reports(exc: Exception) -> str:
    try:
        fails(exc)
    except Exception:
        return traceback.format_exc()
    raise AssertionError("expected a failure")


@pytest.fixture(autouse=True)
def _restore_limit() -> Iterator[None]:
    yield
    sys.__dict__.pop("tracebacklimit", None)


def test_a_refusal_reads_as_its_words() -> None:
    shown = as_the_host_reports(Refused("health gate failed for stack 's': HTTP 503\n  url: http://x"))
    assert shown == "fetchml: health gate failed for stack 's': HTTP 503\n  url: http://x\n"
    assert one_line("error: " + shown) == "health gate failed for stack 's': HTTP 503; url: http://x"


def test_an_expected_exception_reads_as_its_words_too() -> None:
    assert as_the_host_reports(KeyError("no such key")) == "fetchml: 'no such key'\n"


def test_a_bug_keeps_its_traceback_even_after_a_refusal() -> None:
    as_the_host_reports(Refused("first"))
    shown = as_the_host_reports(ZeroDivisionError("division by zero"))
    assert shown.startswith("Traceback (most recent call last):") and "ZeroDivisionError" in shown
