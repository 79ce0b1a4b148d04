"""outcome.classify over events shaped like the engine's event log (the fault suite checks the real ones)."""

from __future__ import annotations

from typing import Any

from fetchml_infra import outcome
from fetchml_infra.attempt import moved_to, no_verdict_reason
from fetchml_infra.host import AppContainer

URN = "urn:pulumi:s::fetchml::fetchml:index:FetchML${}::{}"
PRELUDE: dict[str, Any] = {"preludeEvent": {"config": {}}}
SUMMARY: dict[str, Any] = {"summaryEvent": {"resourceChanges": {}}}


def failed(kind: str, name: str, message: str) -> list[dict[str, Any]]:
    urn = URN.format(kind, name)
    return [
        {"diagnosticEvent": {"urn": urn, "severity": "error", "message": message}},
        {"resOpFailedEvent": {"metadata": {"urn": urn, "op": "create"}, "status": 1}},
    ]


def done(name: str, op: str) -> dict[str, Any]:
    return {"resOutputsEvent": {"metadata": {"urn": URN.format("docker:index/container:Container", name), "op": op}}}


def test_success_lists_what_changed() -> None:
    found = outcome.classify([PRELUDE, done("api", "create-replacement"), done("redis", "same"), SUMMARY], returncode=0)
    assert found.ok and found.changed == ("api",) and found.changed_app == ("api",)


def test_gate_failure_is_the_only_verdict_on_the_image() -> None:
    message = "Exception calling application: health gate failed for stack 's' after 12s: HTTP 503\n  url: x"
    found = outcome.classify(
        [PRELUDE, *failed("pulumi-python:dynamic/fetchml:HealthGate", "health-gate", message), SUMMARY], returncode=255
    )
    assert found.kind == "gate-failed" and found.verdict_on_image
    assert found.detail == "health-gate: health gate failed for stack 's' after 12s: HTTP 503; url: x"


def test_a_name_conflict_is_an_app_failure_in_one_readable_line() -> None:
    message = (
        "1 error occurred:\n\t* Unable to create container: Error response from daemon: Conflict. "
        'The container name "/p-worker-2" is already in use'
    )
    found = outcome.classify(
        [PRELUDE, *failed("docker:index/container:Container", "worker-2", message), SUMMARY], returncode=255
    )
    assert found.kind == "app-failed" and not found.verdict_on_image
    assert "\n" not in found.detail and "Conflict" in found.detail and "error occurred" not in found.detail
    reason = no_verdict_reason(found, "sha-5d6e7f8")
    assert len(reason) <= 200 and reason.endswith("this is no verdict on it") and "|" not in reason


def test_persistent_part_and_audit_entry_failures() -> None:
    data = outcome.classify(
        [PRELUDE, *failed("docker:index/container:Container", "redis", "boom"), SUMMARY], returncode=255
    )
    assert data.kind == "data-failed"
    entry = outcome.classify(
        [PRELUDE, *failed("pulumi-python:dynamic/fetchml:AuditEntry", "audit-entry", "x"), SUMMARY], returncode=255
    )
    assert entry.kind == "audit-failed"


def test_interrupts_kills_and_locks() -> None:
    cut = [PRELUDE, *failed("docker:index/container:Container", "api", "context canceled")]
    assert outcome.classify(cut, returncode=255, interrupted=True).kind == "cancelled"
    # The engine ends every failed update with a cancelEvent: without a signal from the CLI, the failed step
    # is what happened (a port taken mid-update is an app failure, to be restored, not a cancel).
    assert outcome.classify([*cut, {"cancelEvent": {}}, SUMMARY], returncode=255).kind == "app-failed"
    assert outcome.classify([PRELUDE, {"cancelEvent": {}}], returncode=255).kind == "cancelled"
    assert outcome.classify([PRELUDE, done("api", "delete-replaced")], returncode=-9).kind == "killed"
    assert "signal 9" in outcome.classify([PRELUDE], returncode=-9).detail
    assert outcome.classify([], returncode=255, stack_locked=True).kind == "locked"


def test_program_errors_and_policy_refusals_change_nothing() -> None:
    stack_error = {
        "diagnosticEvent": {
            "urn": "urn:pulumi:s::fetchml::pulumi:pulumi:Stack::fetchml-s",
            "severity": "error",
            "message": "audit log x: expected to open",
        }
    }
    refused = outcome.classify([PRELUDE, stack_error, SUMMARY], returncode=255)
    assert refused.kind == "refused" and refused.detail.startswith("audit log x")
    policy = {
        "policyEvent": {"policyName": "loopback-ports", "enforcementLevel": "mandatory", "message": "public bind"}
    }
    assert outcome.classify([PRELUDE, policy, SUMMARY], returncode=255).detail == "policy loopback-ports: public bind"
    # As the engine writes a program's own refusal: no urn, and the update shut down with a cancelEvent.
    program = {
        "diagnosticEvent": {
            "severity": "error",
            "message": "Program failed with an unhandled exception:\nfetchml: schema check: the live schema is 3\n",
        }
    }
    found = outcome.classify([PRELUDE, program, SUMMARY, {"cancelEvent": {}}], returncode=255)
    assert (found.kind, found.detail) == ("refused", "schema check: the live schema is 3")


def test_a_move_is_a_new_container_on_the_target_image() -> None:
    old = {"api": AppContainer("p-api", "1", "sha-a", True), "worker-1": AppContainer("p-worker-1", "2", "sha-a", True)}
    assert not moved_to("sha-b", old, {}), "containers only removed: no move"
    assert not moved_to("sha-b", old, old)
    assert moved_to("sha-b", old, {"api": AppContainer("p-api", "3", "sha-b", True)})
    assert not moved_to("sha-a", old, {"api": AppContainer("p-api", "1", "sha-a", True)})
    never_started = {"api": AppContainer("p-api", "3", "sha-b", False, started=False)}
    assert not moved_to("sha-b", old, never_started), "a create cut short ran nothing"
