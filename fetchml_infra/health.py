"""Health verdicts: is the service that answers at the health URL the one we just deployed, and healthy?

``judge`` is pure: one HTTP observation in, a verdict out. ``poll`` is the thin loop around it (httpx, with
backoff and an overall deadline). The HealthGate dynamic resource that runs it during ``pulumi up`` lives in
fetchml_infra.gate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

OK_STATUSES = ("ok", "healthy", "pass")
EXCERPT = 200


@dataclass(frozen=True)
class Observation:
    """What one request saw: an HTTP status and body, or the transport error instead."""

    status: int | None
    body: str
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str
    status: int | None = None
    version: str | None = None
    compliance_mode: str | None = None
    body_excerpt: str = ""


def judge(obs: Observation, *, expected_version: str, required_compliance: str | None) -> Verdict:
    """Healthy means: HTTP 200, a JSON body whose status is ok, the deployed version when the service
    reports one, and, when ``required_compliance`` is set, a compliance_mode equal to it."""
    excerpt = obs.body[:EXCERPT]
    if obs.error is not None:
        return Verdict(False, f"no answer: {obs.error}")
    try:
        doc = json.loads(obs.body)
    except ValueError:
        doc = None
    info = doc if isinstance(doc, dict) else {}
    version = _text(info.get("version"))
    compliance = _text(info.get("compliance_mode"))

    def fail(reason: str) -> Verdict:
        return Verdict(False, reason, obs.status, version, compliance, excerpt)

    if obs.status != 200:
        return fail(f"HTTP {obs.status}")
    if not info:
        return fail("body is not a JSON object")
    status = _text(info.get("status"))
    if (status or "").lower() not in OK_STATUSES:
        return fail(f"status is {status!r}, expected one of {', '.join(OK_STATUSES)}")
    if version is not None and version != expected_version:
        return fail(f"service reports version {version!r}, expected {expected_version!r}")
    if required_compliance is not None and compliance != required_compliance:
        shown = "missing" if compliance is None else repr(compliance)
        return fail(f"compliance_mode is {shown}, expected {required_compliance!r}")
    return Verdict(True, "healthy", obs.status, version, compliance, excerpt)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def observe(client: httpx.Client, url: str) -> Observation:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return Observation(None, "", f"{type(exc).__name__}: {exc}".rstrip(": "))
    return Observation(response.status_code, response.text)


@dataclass(frozen=True)
class PollResult:
    verdict: Verdict
    elapsed: float
    attempts: int


def poll(
    url: str | Callable[[], str],
    *,
    expected_version: str,
    required_compliance: str | None,
    timeout: float,
    first_delay: float = 0.25,
    max_delay: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PollResult:
    """Ask ``url`` until it is healthy or ``timeout`` seconds have passed; the last verdict says why not.
    A callable ``url`` is asked for the address before every attempt (a container's can change)."""
    start = clock()
    deadline = start + timeout
    delay = first_delay
    attempts = 0
    per_request = httpx.Timeout(min(5.0, max(timeout, 0.1)))
    with httpx.Client(timeout=per_request, trust_env=False) as client:
        while True:
            attempts += 1
            verdict = judge(
                observe(client, url() if callable(url) else url),
                expected_version=expected_version,
                required_compliance=required_compliance,
            )
            now = clock()
            if verdict.healthy or now + delay > deadline:
                return PollResult(verdict, now - start, attempts)
            sleep(delay)
            delay = min(delay * 2, max_delay)


def describe_failure(result: PollResult, *, url: str, stack: str, rollback_advice: str) -> str:
    """The message an operator reads at 3 a.m.: what was seen, and what rolls back (``rollback_advice``)."""
    v = result.verdict
    lines = [
        f"health gate failed for stack '{stack}' after {result.elapsed:.1f}s ({result.attempts} attempts): {v.reason}",
        f"  url: {url}",
        f"  status: {v.status if v.status is not None else 'no response'}",
        f"  version reported: {v.version or 'none'}",
        f"  compliance_mode reported: {v.compliance_mode or 'none'}",
    ]
    if v.body_excerpt:
        lines.append(f"  body: {v.body_excerpt}")
    lines.append(f"  {rollback_advice}")
    return "\n".join(lines)
