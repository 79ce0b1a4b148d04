"""One timeline: audit entries and Pulumi updates merged, each move once, newest first, times in UTC."""

from __future__ import annotations

from dataclasses import dataclass

from fetchml_infra.history import Update
from fetchml_infra.timeline import merge, parse_time


@dataclass(frozen=True)
class E:
    time: str
    action: str
    outcome: str
    from_image: str
    to_image: str
    actor: str = "ops"
    reason: str = "-"
    stack: str = "prod"


def update(start: str, end: str, image: str, result: str = "succeeded", message: str = "") -> Update:
    return Update("update", result, start, image, message, None, None, end_time=end, reason=None)


def test_each_move_appears_once_and_updates_without_an_entry_have_rows_of_their_own() -> None:
    updates = [  # newest first, as stack history lists them
        update("2026-11-27T03:10:00+00:00", "2026-11-27T03:10:30+00:00", "sha-9c0ffee", "failed"),
        update("2026-11-27T03:05:00+00:00", "2026-11-27T03:05:04+00:00", "sha-1a2b3c4"),  # config only
        update("2026-11-27T03:00:00+00:00", "2026-11-27T03:00:20+00:00", "sha-1a2b3c4"),
    ]
    entries = [
        E("2026-11-27T02:00:00Z", "adopt", "success", "-", "-", stack="prod"),
        E("2026-11-27T03:00:18Z", "deploy", "success", "none", "sha-1a2b3c4", reason="first"),
        E("2026-11-27T03:10:25Z", "deploy", "failure", "sha-1a2b3c4", "sha-9c0ffee", reason="health-check-failure"),
        E("2026-11-27T03:20:00Z", "rollback", "success", "sha-9c0ffee", "sha-1a2b3c4", reason="by hand"),
        E("2026-11-27T03:21:00Z", "deploy", "success", "none", "sha-5d6e7f8", stack="staging"),
    ]
    rows = [
        (r.time, r.source, r.action, r.from_image, r.to_image, r.outcome, r.reason)
        for r in merge(updates, entries, "prod")
    ]
    assert rows == [
        ("2026-11-27T03:20:00Z", "audit", "rollback", "sha-9c0ffee", "sha-1a2b3c4", "success", "by hand"),
        ("2026-11-27T03:10:25Z", "audit", "deploy", "sha-1a2b3c4", "sha-9c0ffee", "failure", "health-check-failure"),
        ("2026-11-27T03:05:00Z", "update", "config", "sha-1a2b3c4", "sha-1a2b3c4", "success", "-"),
        ("2026-11-27T03:00:18Z", "audit", "deploy", "none", "sha-1a2b3c4", "success", "first"),
        ("2026-11-27T02:00:00Z", "audit", "adopt", "-", "-", "success", "-"),
    ]


def test_a_failed_update_that_moved_nothing_is_its_own_row_and_times_are_utc() -> None:
    updates = [update("2026-11-27T04:00:00", "2026-11-27T04:00:09", "sha-dead001", "failed")]
    (row,) = merge(updates, [], "prod")
    assert (row.time, row.source, row.outcome, row.as_dict()["result"]) == (
        "2026-11-27T04:00:00Z",
        "update",
        "failure",
        "failed",
    )
    assert parse_time("2026-11-27T05:00:00+01:00") == parse_time("2026-11-27T04:00:00Z")
    assert parse_time("not a time") is None
