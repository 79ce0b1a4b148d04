"""A read of a stack's state while another engine rewrites the state file (the file backend writes it in
place): the CLI reads again for a moment, then says what it could not read, never a traceback. Seen on the real
engine in the fault test where a second operator runs while a killed CLI's engine finishes."""

from __future__ import annotations

import pytest
from pulumi.automation import errors
from pulumi.automation._cmd import CommandResult

from fetchml_infra import workspace
from fetchml_infra.workspace import OperatorError


def torn(times: int) -> object:
    calls = [0]

    def read() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise errors.CommandError(CommandResult(stdout="", stderr="error: failed to load checkpoint: EOF", code=1))
        return "state"

    return read


def test_a_state_file_caught_mid_write_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    assert workspace._state_read("prod", torn(2)) == "state"  # type: ignore[arg-type]


def test_a_state_file_that_stays_unreadable_is_an_operator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    with pytest.raises(OperatorError, match="could not read stack 'prod''s state: error: failed to load checkpoint"):
        workspace._state_read("prod", torn(99))  # type: ignore[arg-type]


def test_other_engine_errors_are_not_retried() -> None:
    def read() -> str:
        raise errors.CommandError(CommandResult(stdout="", stderr="error: something else", code=1))

    with pytest.raises(errors.CommandError):
        workspace._state_read("prod", read)
