"""What happened to an update, classified once from the engine's structured events (pure).

One small vocabulary, read by the CLI's exit code and messages, the audit entry's reason, the deny list and
the tests. Only ``gate-failed`` is a verdict on an image: every other failure is the infrastructure's, and a
healthy tag is never denied for it.

    succeeded     the update finished
    gate-failed   the health gate saw the new containers unhealthy (a verdict on the image)
    app-failed    an API or worker container (or its image) could not be created or started: a name or port
                  conflict, a missing image, an engine error; the image never ran
    data-failed   a persistent part (network, Redis, MinIO, a volume) could not be created or changed
    audit-failed  the audit entry could not be written
    refused       the program or a policy stopped the update before any step ran
    locked        another update holds the stack
    cancelled     the CLI was interrupted (Ctrl-C, SIGTERM) and the engine cancelled
    killed        the engine ended without finishing (killed, crashed)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GATE = "health-gate"
AUDIT = "audit-entry"
_APP = re.compile(r"api|api-image|worker|worker-\d+|worker-image")  # worker: the swarm service
# What a gate says when the cluster, not the image, kept it from checking (fetchml_infra.swarm_gate).
NOT_A_VERDICT = "not a verdict on the image"
_CHANGED = {"create", "update", "delete", "replace", "create-replacement", "delete-replaced"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|<\{%[^%]*%\}>")
# Wrapping that the engine, the Terraform bridge, gRPC and our providers (provider_errors) put around the words.
_NOISE = re.compile(
    r"^(error:\s*)?(\d+ errors? occurred:|Exception calling application:|fetchml:|update failed|"
    r"an unhandled error occurred:|deleting urn:[^:]*:.*)\s*",
    re.IGNORECASE,
)
MAX_DETAIL = 240
_FAILURES = (("gate", "gate-failed"), ("app", "app-failed"), ("audit", "audit-failed"), ("data", "data-failed"))


@dataclass(frozen=True)
class Outcome:
    kind: str
    resource: str | None  # the logical name of the resource whose step failed
    detail: str  # one readable line
    changed: tuple[str, ...]  # resources whose steps completed with a change, in order

    @property
    def ok(self) -> bool:
        return self.kind == "succeeded"

    @property
    def verdict_on_image(self) -> bool:
        return self.kind == "gate-failed"

    @property
    def changed_app(self) -> tuple[str, ...]:
        return tuple(n for n in self.changed if _APP.fullmatch(n))


def is_provider(metadata: Mapping[str, Any]) -> bool:
    """A provider resource (``pulumi:providers:*``): the engine's own bookkeeping, never an app change. Current
    CLIs plan an update of the dynamic providers' default provider whenever stack config changes."""
    return str(metadata.get("type", "")).startswith("pulumi:providers:")


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def role(name: str) -> str:
    """gate, audit, app or data: which part of the stack a resource is."""
    if name == GATE:
        return "gate"
    if name == AUDIT:
        return "audit"
    return "app" if _APP.fullmatch(name) else "data"


def one_line(message: str) -> str:
    """A diagnostic as one readable line: no colour codes, no wrapping, no gRPC or bridge noise."""
    parts = []
    for raw in _ANSI.sub("", message).splitlines():
        line = raw.strip().lstrip("*").strip()
        while line and (m := _NOISE.match(line)) and m.end() > 0:
            line = line[m.end() :].strip()
        if line and line not in parts:
            parts.append(line)
    text = re.sub(r"\s+", " ", "; ".join(parts)).replace("|", "/")
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def _of(events: Iterable[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    return [e[key] for e in events if isinstance(e.get(key), Mapping)]


def _errors(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(resource name, message) of every error diagnostic, in order."""
    return [
        (resource_name(str(d.get("urn") or "")), str(d.get("message", "")))
        for d in _of(events, "diagnosticEvent")
        if d.get("severity") == "error"
    ]


def _stack_errors(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(urn, message) of the program's own failures: error diagnostics of the stack resource or of none."""
    return [
        (str(d.get("urn")), str(d.get("message", "")).replace("Program failed with an unhandled exception:", ""))
        for d in _of(events, "diagnosticEvent")
        if d.get("severity") == "error" and (not d.get("urn") or "::pulumi:pulumi:Stack::" in str(d.get("urn")))
    ]


def _failed(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [resource_name(str(f.get("metadata", {}).get("urn", ""))) for f in _of(events, "resOpFailedEvent")]


def _detail_for(name: str, errors: Sequence[tuple[str, str]]) -> str:
    for where, message in errors:
        if where == name and one_line(message):
            return one_line(message)
    return f"{name}: the engine reported the step failed without saying why"


def classify(
    events: Sequence[Mapping[str, Any]],
    *,
    returncode: int,
    interrupted: bool = False,
    stack_locked: bool = False,
) -> Outcome:
    """The outcome of one engine run from its events and exit status.

    ``interrupted`` says the CLI passed a signal on to the engine; ``stack_locked`` that the backend holds
    another update's lock on the stack (the engine emits no event when it cannot take it).
    """
    changed = tuple(
        resource_name(str(o.get("metadata", {}).get("urn", "")))
        for o in _of(events, "resOutputsEvent")
        if o.get("metadata", {}).get("op") in _CHANGED and not is_provider(o.get("metadata", {}))
    )
    if returncode == 0:
        return Outcome("succeeded", None, "", changed)
    errors = _errors(events)
    # A failed step names its resource; an error diagnostic of the gate, an app container or the audit entry
    # counts too (a killed engine may not have written the step's failure). The stack resource's own errors
    # (program errors) are not a resource's failure.
    failed = _failed(events) + [n for n, _ in errors if role(n) in ("gate", "app", "audit")]
    gate = next((n for n in failed if role(n) == "gate"), None)
    # Steps cut short by a cancel the CLI passed on fail too; they are the cancel's doing. The engine also
    # writes a cancelEvent when a failed update shuts down, so that event alone never hides a step's failure.
    if gate is None and interrupted:
        return Outcome("cancelled", None, "the update was interrupted and the engine cancelled it", changed)
    # The program itself refused (the schema check, a snapshot that could not be stored): the engine shuts the
    # update down with a cancelEvent too, but nothing was interrupted and no step failed.
    stack_errors = _stack_errors(events)
    program = [one_line(m) for _, m in stack_errors if one_line(m)]
    policy_said = any(p.get("enforcementLevel") == "mandatory" for p in _of(events, "policyEvent"))
    if program and not policy_said and not set(failed) - {resource_name(urn) for urn, _ in stack_errors}:
        return Outcome("refused", None, program[0], changed)
    if gate is not None and NOT_A_VERDICT in _detail_for(gate, errors):
        return Outcome("app-failed", gate, f"{gate}: {_detail_for(gate, errors)}", changed)
    for wanted, kind in _FAILURES:
        name = next((n for n in failed if n and role(n) == wanted), None)
        if name is not None:
            return Outcome(kind, name, f"{name}: {_detail_for(name, errors)}", changed)
    if _of(events, "cancelEvent"):
        return Outcome("cancelled", None, "the update was interrupted and the engine cancelled it", changed)
    started = bool(_of(events, "preludeEvent"))
    if not started and stack_locked:
        return Outcome("locked", None, "another update holds the stack's lock", changed)
    if not _of(events, "summaryEvent"):
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        return Outcome("killed", None, f"the engine stopped before the update finished ({how})", changed)
    policy = [p for p in _of(events, "policyEvent") if p.get("enforcementLevel") == "mandatory"]
    if policy:
        p = policy[0]
        return Outcome("refused", None, f"policy {p.get('policyName')}: {one_line(str(p.get('message')))}", changed)
    message = next((one_line(m) for _, m in errors if one_line(m)), "the update failed before any step ran")
    return Outcome("refused", None, message, changed)
