"""AuditEntryProvider as plain Python against real files, and both providers through a real pickle round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from fetchml_infra import audit
from fetchml_infra.gate import AuditEntryProvider, HealthGateProvider


def props(log: Path, image: str, **extra: str) -> dict[str, object]:
    base = {"image": image, "stack": "staging", "audit_log": str(log), "actor": "alice", "reason": "", "gate": True}
    return {**base, **extra}


def deploy(log: Path, image: str, olds: dict[str, object] | None = None, **extra: str) -> dict[str, object]:
    provider = AuditEntryProvider()
    news = props(log, image, **extra)
    if olds is None:
        return dict(provider.create(news).outs or {})
    return dict(provider.update("audit-staging", olds, news).outs or {})


def test_first_deploy_appends_one_entry_from_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    outs = deploy(log, "sha-1a2b3c4")
    [entry] = audit.entries(log)
    assert (entry.action, entry.outcome, entry.from_image, entry.to_image) == (
        "deploy",
        "success",
        "none",
        "sha-1a2b3c4",
    )
    assert (entry.actor, entry.reason, entry.stack) == ("alice", "-", "staging")
    assert (outs["head"], outs["length"]) == audit.head(log)
    assert outs["action"] == "deploy"


def test_back_to_an_earlier_image_is_recorded_as_a_rollback(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    a = deploy(log, "sha-1a2b3c4")
    b = deploy(log, "sha-5d6e7f8", olds=a)
    back = deploy(log, "sha-1a2b3c4", olds=b, reason="bad-release")
    assert [(e.action, e.from_image, e.to_image) for e in audit.entries(log)] == [
        ("deploy", "none", "sha-1a2b3c4"),
        ("deploy", "sha-1a2b3c4", "sha-5d6e7f8"),
        ("rollback", "sha-5d6e7f8", "sha-1a2b3c4"),
    ]
    assert audit.entries(log)[-1].reason == "bad-release"
    assert back["length"] == 3 and audit.verify(log).ok


def test_only_a_change_of_image_triggers_an_entry(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    olds = deploy(log, "sha-1a2b3c4")
    provider = AuditEntryProvider()
    assert not provider.diff("id", olds, props(log, "sha-1a2b3c4", actor="bob", reason="other")).changes
    assert provider.diff("id", olds, props(log, "sha-5d6e7f8")).changes


def test_after_a_failed_gate_returning_to_the_same_image_is_still_recorded(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    b = deploy(log, "sha-5d6e7f8")
    # The gate of sha-9c0ffee failed and recorded it; this resource's state still says sha-5d6e7f8.
    audit.append(
        log,
        action="deploy",
        outcome="failure",
        from_image="sha-5d6e7f8",
        to_image="sha-9c0ffee",
        actor="alice",
        reason="health-check-failure: HTTP 503",
        stack="staging",
    )
    news = props(log, "sha-5d6e7f8", reason="health-check-failure")
    assert AuditEntryProvider().diff("id", b, news).changes
    deploy(log, "sha-5d6e7f8", olds=b, reason="health-check-failure")
    last = audit.entries(log)[-1]
    assert (last.action, last.outcome, last.from_image, last.to_image, last.reason) == (
        "rollback",
        "success",
        "sha-9c0ffee",
        "sha-5d6e7f8",
        "health-check-failure",
    )


def test_a_broken_chain_stops_the_deploy_and_nothing_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    olds = deploy(log, "sha-1a2b3c4")
    deploy(log, "sha-5d6e7f8", olds=olds)
    log.write_bytes(log.read_bytes().replace(b"actor=alice", b"actor=mallo", 1))
    before = log.read_bytes()
    with pytest.raises(Exception) as err:
        deploy(log, "sha-9c0ffee", olds=olds)
    assert "fetchml-infra audit verify --log" in str(err.value)
    assert "line 1: changed" in str(err.value)
    assert log.read_bytes() == before


def test_a_cut_off_tail_is_caught_against_the_recorded_head(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    a = deploy(log, "sha-1a2b3c4")
    b = deploy(log, "sha-5d6e7f8", olds=a)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0])  # someone "rolled back" the log itself
    with pytest.raises(Exception) as err:
        deploy(log, "sha-1a2b3c4", olds=b)
    assert "truncated" in str(err.value)


def test_delete_is_a_no_op(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    outs = deploy(log, "sha-1a2b3c4")
    before = log.read_bytes()
    AuditEntryProvider().delete("audit-staging", outs)
    assert log.read_bytes() == before


FRESH_PROCESS = """
import base64, sys, dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
result = provider.create({"image": "sha-1a2b3c4", "stack": "staging", "audit_log": sys.argv[1],
                          "actor": "alice", "reason": "", "gate": True})
print(type(provider).__module__, result.outs["action"], result.outs["length"])
"""


def test_providers_survive_pulumis_serialisation_into_a_fresh_process(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    blob = serialize_provider(AuditEntryProvider())
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(log)], input=blob, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["fetchml_infra.gate", "deploy", "1"]
    assert audit.verify(log).ok
    # Pickled by reference: the state carries no copy of our code and no captured objects.
    assert len(serialize_provider(HealthGateProvider())) < 200
