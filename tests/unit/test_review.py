"""The preview summary a reviewer reads: pure rendering of planned steps."""

from __future__ import annotations

from typing import Any

from fetchml_infra.review import CONTAINER, MARKER, Review, Step, render, render_blocked


def review(steps: list[Step], action: str = "rollback", **extra: object) -> Review:
    base: dict[str, object] = {
        "stack": "prod",
        "from_image": "sha-5d6e7f8",
        "to_image": "sha-1a2b3c4",
        "action": action,
        "steps": steps,
        "protected": ["audit-entry", "minio-data", "redis-data"],
        "images_present": {"ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4": True},
        "audit_head": "ab" * 32,
        "audit_length": 7,
        "audit_ok": True,
    }
    base.update(extra)
    return Review(**base)  # type: ignore[arg-type]


APP_CHANGE = [
    Step("create", "api-sha-1a2b3c4", CONTAINER, False),
    Step("create", "worker-sha-1a2b3c4-1", CONTAINER, False),
    Step("delete", "api-sha-5d6e7f8", CONTAINER, False),
    Step("delete", "worker-sha-5d6e7f8-1", CONTAINER, False),
    Step("update", "proxy-route", "pulumi-python:dynamic/fetchml:Route", False),
    Step("update", "health-gate", "pulumi-python:dynamic/fetchml:HealthGate", False),
    Step("update", "audit-entry", "pulumi-python:dynamic/fetchml:AuditEntry", True),
]


def test_a_rollback_names_the_move_the_replacements_and_that_nothing_protected_moves() -> None:
    switch = ("fx-api-sha-5d6e7f8", "fx-api-sha-1a2b3c4")
    text = render(review(APP_CHANGE, switch=switch), markdown=True)
    assert text.startswith(MARKER)
    assert "**Rollback**: sha-5d6e7f8 -> sha-1a2b3c4" in text
    assert (
        "- proxy switch: fx-api-sha-5d6e7f8 -> fx-api-sha-1a2b3c4, only once fx-api-sha-1a2b3c4 passes its "
        "health gate (the proxy container itself is not replaced)"
    ) in text
    assert "- containers to start: api-sha-1a2b3c4, worker-sha-1a2b3c4-1" in text
    assert "- containers to remove after the switch: api-sha-5d6e7f8, worker-sha-5d6e7f8-1" in text
    assert "containers to replace" not in text
    assert "- resources to update: audit-entry, health-gate, proxy-route" in text
    assert "- no protected resource is replaced, deleted or unprotected (audit-entry, minio-data, redis-data)" in text
    assert "- image ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4: present locally" in text
    assert "- audit chain intact: 7 entries, head abababababababab" in text


def test_touching_a_protected_resource_is_a_loud_warning() -> None:
    steps = [*APP_CHANGE, Step("replace", "redis-data", "docker:index/volume:Volume", True)]
    r = review(steps)
    assert r.touched_protected() == ["redis-data"]
    assert "**WARNING: protected resources would be replaced, deleted or unprotected: redis-data**" in render(
        r, markdown=True
    )
    unprotect = review([Step("update", "minio-data", "docker:index/volume:Volume", True, unprotects=True)])
    assert unprotect.touched_protected() == ["minio-data"]


def test_plain_text_for_the_terminal_and_the_no_op_case() -> None:
    text = render(review([], action="none"))
    assert not text.startswith(MARKER)
    assert text.splitlines()[0] == "No change of image: stays on sha-5d6e7f8."
    assert "- containers to start: none" in text and "- containers to remove: none" in text
    assert "proxy switch" not in text
    missing = render(review([], images_present={"x:sha-1": False}, audit_ok=False))
    assert "- image x:sha-1: NOT present locally; it must be pulled" in missing
    assert "- audit chain BROKEN (run `fetchml-infra audit verify`)" in missing


def test_the_comment_names_the_stack_settings_the_reason_and_when_the_target_last_passed() -> None:
    settings: dict[str, Any] = {
        "environment": "prod", "compliance_mode": "hipaa", "auto_rollback": False, "reason": "bad-release",
    }  # fmt: skip
    text = render(review(APP_CHANGE, **settings, target_passed_at="2026-11-20T03:00:00Z"), markdown=True)
    assert "- stack: environment prod, compliance mode hipaa, autoRollback false (roll back by hand)" in text
    assert "- reason: bad-release" in text
    assert "- sha-1a2b3c4 last passed its health gate here at 2026-11-20T03:00:00Z" in text
    fresh = render(review(APP_CHANGE, action="deploy", **{**settings, "reason": ""}), markdown=True)
    assert "- sha-1a2b3c4 has never passed its health gate here" in fresh
    assert "- reason: none given (set one with --reason)" in fresh


def test_a_change_that_cannot_be_previewed_still_gets_a_comment() -> None:
    problem = "stack 'prod' has invalid configuration; nothing was changed:\n  - image: sha-9c0ffee is denied"
    text = render_blocked("prod", problem, markdown=True)
    assert text.startswith(MARKER) and "### fetchml-infra preview: stack `prod`" in text
    assert "**Blocked**: this change cannot be deployed as it stands." in text
    assert "- image: sha-9c0ffee is denied" in text.splitlines()
