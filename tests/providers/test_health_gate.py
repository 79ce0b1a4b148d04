"""HealthGateProvider as plain Python against a real HTTP server on 127.0.0.1 and a real audit log file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetchml_infra import audit
from fetchml_infra.gate import HealthGateProvider
from tests.providers.scripted_server import Reply, Script, free_port, ok, serve

ROLLBACK = "roll back with: fetchml-infra rollback --stack staging --reason health-check-failure"


def props(url: str, log: Path, *, compliance: str = "none", timeout: float = 3.0) -> dict[str, object]:
    return {
        "url": url,
        "image": "sha-1a2b3c4",
        "compliance_mode": compliance,
        "timeout": timeout,
        "stack": "staging",
        "audit_log": str(log),
        "actor": "tester",
        "rollback_advice": ROLLBACK,
        "targets": ["container-id"],
    }


def entries(log: Path) -> list[audit.Entry]:
    return audit.entries(str(log)) if log.exists() else []


def test_passes_on_a_healthy_service_and_records_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    with serve(Script(ok())) as url:
        result = HealthGateProvider().create(props(url, log))
    assert result.outs is not None
    assert result.outs["healthy"] is True
    assert result.outs["version"] == "sha-1a2b3c4"
    assert entries(log) == []  # success is AuditEntry's to record, after the gate


def test_waits_through_a_slow_start(tmp_path: Path) -> None:
    port = free_port()
    with serve(Script(ok()), start_after=1.0, port=port) as url:
        result = HealthGateProvider().create(props(url, tmp_path / "audit.log", timeout=8))
    assert result.outs is not None
    assert result.outs["healthy"] is True
    assert result.outs["elapsed"] >= 0.9


def test_waits_through_500s_until_200(tmp_path: Path) -> None:
    script = Script(Reply(500, "warming up"), Reply(500, "warming up"), Reply(500, "warming up"), ok())
    with serve(script) as url:
        result = HealthGateProvider().create(props(url, tmp_path / "audit.log", timeout=8))
    assert result.outs is not None
    assert result.outs["healthy"] is True
    assert script.served == 4


FAILURES = [
    ("always 503", [Reply(503, json.dumps({"status": "starting"}))], "none", "HTTP 503"),
    ("wrong version", [ok(version="sha-5d6e7f8")], "none", "service reports version 'sha-5d6e7f8'"),
    ("hipaa missing", [ok()], "hipaa", "compliance_mode is missing, expected 'hipaa'"),
    ("hipaa wrong", [ok(compliance_mode="none")], "hipaa", "compliance_mode is 'none', expected 'hipaa'"),
    ("too slow", [Reply(200, json.dumps({"status": "ok"}), delay=2.5)], "none", "no answer: ReadTimeout"),
]


@pytest.mark.parametrize(("replies", "compliance", "reason"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failure_stops_the_update_and_is_recorded(
    tmp_path: Path, replies: list[Reply], compliance: str, reason: str
) -> None:
    log = tmp_path / "audit.log"
    with serve(Script(*replies)) as url, pytest.raises(Exception) as err:
        HealthGateProvider().create(props(url, log, compliance=compliance, timeout=2.0))
    text = str(err.value)
    assert reason in text
    assert f"  {ROLLBACK}" in text
    assert "recorded in the audit log" in text
    [entry] = entries(log)
    assert (entry.action, entry.outcome, entry.to_image, entry.stack) == ("deploy", "failure", "sha-1a2b3c4", "staging")
    assert reason in entry.reason
    assert audit.verify(str(log)).ok


def test_connection_refused_reports_no_response(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(Exception) as err:
        HealthGateProvider().create(props(url, tmp_path / "audit.log", timeout=1.0))
    assert "no answer: ConnectError" in str(err.value)
    assert "status: no response" in str(err.value)


def _recorded(log: Path, outcome: str) -> None:
    audit.append(
        str(log),
        action="deploy",
        outcome=outcome,
        from_image="none",
        to_image="sha-1a2b3c4",
        actor="tester",
        reason="-",
        stack="staging",
    )


def test_update_rechecks_only_when_what_it_guards_changed(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    _recorded(log, "success")  # the usual state: the chain's last move is this image passing its gate
    p = props("http://127.0.0.1:1/health", log)
    gate = HealthGateProvider()
    assert not gate.diff("gate", {**p, "actor": "someone-else"}, p).changes
    assert gate.diff("gate", {**p, "targets": ["old-container"]}, p).changes
    assert gate.diff("gate", {**p, "image": "sha-5d6e7f8"}, p).changes


def test_rechecks_an_image_the_chain_never_saw_pass(tmp_path: Path) -> None:
    """A retry of an image whose gate failed changes no input, and must still be checked, not waved through."""
    log = tmp_path / "audit.log"
    p = props("http://127.0.0.1:1/health", log)
    gate = HealthGateProvider()
    assert gate.diff("gate", p, p).changes, "an empty chain proves nothing"
    _recorded(log, "failure")
    assert gate.diff("gate", p, p).changes
    with pytest.raises(Exception) as err:
        gate.update("gate", p, {**p, "timeout": 0.5})
    assert "no audit entry was written: the running containers did not change" in str(err.value)
    assert len(entries(log)) == 1, "a failed re-check of unchanged containers is no move to record"
