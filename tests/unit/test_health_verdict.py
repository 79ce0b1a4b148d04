"""The pure health verdict: what counts as healthy, and what the operator is told when it is not."""

from __future__ import annotations

import json

import pytest

from fetchml_infra.health import Observation, PollResult, Verdict, describe_failure, judge


def body(**fields: object) -> str:
    return json.dumps(fields)


CASES = [
    ("ok", Observation(200, body(status="ok", version="sha-1a2b3c4")), None, True, "healthy"),
    ("no version reported", Observation(200, body(status="ok")), None, True, "healthy"),
    ("500", Observation(500, "boom"), None, False, "HTTP 500"),
    ("503 starting", Observation(503, body(status="starting")), None, False, "HTTP 503"),
    ("not json", Observation(200, "OK"), None, False, "body is not a JSON object"),
    ("status not ok", Observation(200, body(status="degraded")), None, False, "status is 'degraded'"),
    ("wrong version", Observation(200, body(status="ok", version="sha-5d6e7f8")), None, False, "reports version"),
    ("refused", Observation(None, "", "ConnectError: refused"), None, False, "no answer: ConnectError"),
    (
        "hipaa ok",
        Observation(200, body(status="ok", compliance_mode="hipaa")),
        "hipaa",
        True,
        "healthy",
    ),
    ("hipaa missing", Observation(200, body(status="ok")), "hipaa", False, "compliance_mode is missing"),
    (
        "hipaa wrong",
        Observation(200, body(status="ok", compliance_mode="none")),
        "hipaa",
        False,
        "compliance_mode is 'none', expected 'hipaa'",
    ),
]


@pytest.mark.parametrize(("obs", "required", "healthy", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_judge(obs: Observation, required: str | None, healthy: bool, reason: str) -> None:
    verdict = judge(obs, expected_version="sha-1a2b3c4", required_compliance=required)
    assert verdict.healthy is healthy
    assert reason in verdict.reason


def test_failure_message_says_what_was_seen_and_how_to_roll_back() -> None:
    result = PollResult(
        Verdict(False, "HTTP 503", 503, "sha-9c0ffee", "none", '{"status":"starting"}'), elapsed=12.34, attempts=9
    )
    text = describe_failure(
        result,
        url="http://127.0.0.1:9101/health",
        stack="prod",
        rollback_advice="roll back with: fetchml-infra rollback --stack prod --reason health-check-failure",
    )
    assert "health gate failed for stack 'prod' after 12.3s (9 attempts): HTTP 503" in text
    assert "status: 503" in text
    assert "version reported: sha-9c0ffee" in text
    assert "compliance_mode reported: none" in text
    assert 'body: {"status":"starting"}' in text
    assert text.endswith("roll back with: fetchml-infra rollback --stack prod --reason health-check-failure")
