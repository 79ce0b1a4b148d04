"""The pure cores of issue 13: the schema check's verdicts, snapshot names and retention, the restore's
refusals and its audit reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fetchml_infra import restore, schema, snapshots
from fetchml_infra.config import parse
from fetchml_infra.guard import with_note
from fetchml_infra.snapshots import Manifest, Part

A, B, D = "sha-1a2b3c4", "sha-5d6e7f8", "sha-3c3c3c3"
LABELS = {"org.fetchml.schema.min": "0", "org.fetchml.schema.max": "2", "org.fetchml.schema.target": "1"}
SECRETS = {
    "minioRootUser": "fetchml-admin",
    "minioRootPassword": "correct-horse-battery",
    "minioAppSecretKey": "app-secret-key-long-enough",
    "postgresPassword": "postgres-password-long-enough",
}


def test_labels_are_read_and_bad_ones_named() -> None:
    assert schema.parse_labels(A, LABELS) == schema.Declared(0, 2, 1)
    assert schema.parse_labels(A, {"org.opencontainers.image.version": A}) is None  # declares nothing
    with pytest.raises(
        schema.SchemaError, match=r"label org.fetchml.schema.max: expected a schema version number, saw 'two'"
    ):
        schema.parse_labels(A, {**LABELS, "org.fetchml.schema.max": "two"})
    with pytest.raises(schema.SchemaError, match="min 3 > org.fetchml.schema.max 2"):
        schema.parse_labels(A, {**LABELS, "org.fetchml.schema.min": "3"})


def test_a_target_the_schema_has_outgrown_is_refused_naming_both_versions() -> None:
    a = schema.Declared(0, 2, 1)
    assert schema.fit(2, A, a).ok and schema.fit(2, A, a).line == f"live schema 2; {A} runs on 0 to 2"
    refused = schema.fit(3, A, a)
    assert not refused.ok
    assert refused.line.startswith(f"the live database schema is 3, but {A} runs on schema 0 to 2")
    assert "forward fix or data recovery" in refused.line and "not a rollback" in refused.line
    assert "\n" not in refused.line
    assert not schema.fit(0, A, schema.Declared(1, 2, None)).ok  # too old a schema, and nothing to migrate it
    assert schema.fit(0, A, schema.Declared(1, 2, 2)).ok  # too old, but its own migrations take it to 2
    assert schema.fit(None, A, a).ok  # no database yet: the first deploy creates it
    assert schema.fit(5, A, None).ok  # an image that declares nothing is not judged
    note = schema.override_note(refused)
    assert (
        note
        == f"schema check overridden (--force-schema): the live database schema is 3, but {A} runs on schema 0 to 2"
    )


def test_pending_migrations_are_what_the_target_has_beyond_the_live_schema() -> None:
    assert schema.pending(1, schema.Declared(0, 2, 2)) == 1
    assert schema.pending(3, schema.Declared(0, 3, 2)) == 0  # never negative: nothing is reverted
    assert schema.pending(None, schema.Declared(0, 2, 2)) == 0


def test_the_override_joins_the_reason_on_one_line() -> None:
    assert with_note("hotfix", "schema check overridden") == "hotfix; schema check overridden"
    assert with_note("", "n") == "n" and with_note("r", "") == "r" and with_note("", "") == ""


def test_snapshot_ids_sort_by_time_and_never_collide() -> None:
    t = datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)
    first = snapshots.new_id(t, 7, set())
    assert first == "20261128T120005Z-e000007" and snapshots.ID.match(first)
    second = snapshots.new_id(t, 7, {first})
    assert second == f"{first}-2" and snapshots.ID.match(second)
    later = snapshots.new_id(datetime(2026, 11, 28, 12, 0, 6, tzinfo=UTC), 8, set())
    assert sorted([later, second, first]) == [first, second, later]


def test_prune_takes_the_oldest_beyond_retention_and_never_the_newest() -> None:
    ids = [f"2026112{d}T000000Z-e00000{d}" for d in range(1, 6)]
    assert snapshots.to_prune(list(reversed(ids)), 2) == ids[:3]
    assert snapshots.to_prune(ids, 5) == [] and snapshots.to_prune(ids, 9) == []
    assert snapshots.to_prune(ids, 1) == ids[:4]


def test_a_manifest_survives_its_json_and_describes_itself_in_one_line() -> None:
    m = Manifest(
        id="20261128T120005Z-e000007",
        stack="staging",
        time="2026-11-28T12:00:05Z",
        before_entry=7,
        audit_head="ab" * 32,
        image=B,
        target=A,
        action="rollback",
        parts={"redis": Part("staging/x/redis.rdb", 2048, "0" * 64), "db": Part("staging/x/db.dump", 5, "1" * 64)},
    )
    assert Manifest.from_json(m.to_json()) == m
    assert m.describe() == (
        f"20261128T120005Z-e000007  2026-11-28T12:00:05Z  before entry #7 (rollback {B} -> {A})  db 5 B, redis 2.0 KiB"
    )
    listing = snapshots.artifacts_listing([("jobs/b/result.json", 9, "e2"), ("jobs/a/result.json", 8, "e1")])
    assert listing.decode().splitlines()[0] == '{"bytes": 8, "etag": "e1", "key": "jobs/a/result.json"}'


def _cfg(**extra: str):
    return parse(extra.pop("stack", "staging"), {"image": A, **SECRETS, **extra}, frozenset(SECRETS))


def test_restore_refuses_before_reading_anything_without_what_it_needs() -> None:
    ask = restore.Ask("20261128T120005Z-e000007", "redis key deleted by hand", True, False, "", False)
    assert restore.refusal(_cfg(), ask) is None  # staging: no confirmation, no incident needed
    assert str(restore.refusal(_cfg(), restore.Ask(ask.snapshot, " ", True, False, "", False))).startswith("--reason:")
    neither = restore.refusal(_cfg(), restore.Ask(ask.snapshot, "why", False, False, "", False))
    assert neither == "--redis / --db: name at least one part to restore; saw neither"
    prod = _cfg(stack="prod", environment="prod", complianceMode="hipaa", autoRollback="false")
    assert str(restore.refusal(prod, ask)).startswith("--incident: restoring data on prod/hipaa stack 'prod'")
    with_ticket = restore.Ask(ask.snapshot, ask.reason, True, True, "INC-42", False)
    assert restore.refusal(prod, with_ticket) == (
        "--yes: restoring data on stack 'prod' replaces live data; confirm with --yes"
    )
    assert restore.refusal(prod, restore.Ask(ask.snapshot, ask.reason, True, True, "INC-42", True)) is None


def test_the_restore_entry_says_what_came_back_from_where_in_one_line() -> None:
    m = Manifest("20261128T120005Z-e000007", "staging", "2026-11-28T12:00:05Z", 7, "-", B, A, "rollback")
    safety = Manifest("20261128T130000Z-e000009", "staging", "2026-11-28T13:00:00Z", 9, "-", A, A, "restore")
    ask = restore.Ask(m.id, "dropped\ntable", True, True, "INC-42", True)
    reason = restore.entry_reason(ask, m, safety, ["redis", "db"], "")
    assert reason == (
        "restore of redis and db from snapshot 20261128T120005Z-e000007 (taken before entry #7); the data before "
        "it is snapshot 20261128T130000Z-e000009: dropped table; incident INC-42"
    )
    failed = restore.entry_reason(ask, m, None, ["redis"], "pg_restore failed, the live database is untouched: x")
    assert failed.startswith("restore of redis from snapshot")  # what did come back, and only that
    assert failed.endswith("; FAILED: pg_restore failed, the live database is untouched: x") and "\n" not in failed
    long = restore.entry_reason(restore.Ask(m.id, "w" * 900, True, True, "", True), m, None, ["redis"], "boom")
    assert long.endswith("; FAILED: boom") and len(long) <= 480  # the operator's words are cut, never the outcome
