"""What a reviewer needs from `pulumi preview`, in one glance: deploy or rollback, what is replaced, and
whether anything persistent is touched. Pure: planned steps in, text out. The CLI collects the steps from the
engine's events (fetchml_infra.cli.preview) and renders them here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fetchml_infra.audit.line import count_entries
from fetchml_infra.outcome import is_provider, one_line, resource_name

MARKER = "<!-- fetchml-infra-preview -->"
REPLACING = ("replace", "create-replacement", "delete-replaced")
CONTAINER = "docker:index/container:Container"
PROTECTED_REFUSAL = re.compile(
    r'unable to (replace|delete) resource "([^"]+)"\s+as it is currently marked for protection'
)


@dataclass(frozen=True)
class Step:
    """One planned step of the preview: its operation on one resource."""

    op: str
    name: str
    type: str
    protected: bool  # protected before or after the step
    unprotects: bool = False  # the step turns protect off


@dataclass(frozen=True)
class Review:
    stack: str
    from_image: str
    to_image: str
    action: str  # deploy | rollback | none
    steps: list[Step]
    protected: list[str]  # names of every protected resource in the current state
    images_present: dict[str, bool]
    audit_head: str
    audit_length: int
    audit_ok: bool
    errors: list[str] = field(default_factory=list)
    environment: str = ""
    compliance_mode: str = ""
    auto_rollback: bool = False
    reason: str = ""
    target_passed_at: str | None = None  # when to_image last passed its gate on this stack
    switch: tuple[str, str] | None = None  # the proxy's switch (from container, to container), if planned
    schema: tuple[bool, str] | None = None  # the database schema check of the target (ok, one line), if it ran

    def replaced(self, type_: str | None = None) -> list[str]:
        return sorted({s.name for s in self.steps if s.op in REPLACING and (type_ is None or s.type == type_)})

    def updated(self) -> list[str]:
        return sorted({s.name for s in self.steps if s.op == "update"})

    def created(self, type_: str | None = None) -> list[str]:
        return sorted({s.name for s in self.steps if s.op == "create" and (type_ is None or s.type == type_)})

    def deleted(self, type_: str | None = None) -> list[str]:
        return sorted({s.name for s in self.steps if s.op == "delete" and (type_ is None or s.type == type_)})

    def touched_protected(self) -> list[str]:
        """Protected resources that the plan would replace, delete, or unprotect."""
        return sorted({s.name for s in self.steps if s.protected and (s.op in (*REPLACING, "delete") or s.unprotects)})


def render_blocked(stack: str, problem: str, markdown: bool = False) -> str:
    """The comment for a change that cannot even be previewed (a denied image, an invalid config), so that a
    pull request always gets one."""
    lines = [MARKER, f"### fetchml-infra preview: stack `{stack}`", ""] if markdown else []
    lines.append(f"{'**Blocked**' if markdown else 'Blocked'}: this change cannot be deployed as it stands.")
    lines += [f"- {line.strip().removeprefix('- ')}" for line in problem.splitlines() if line.strip()]
    return "\n".join(lines) + "\n"


def plan(events: Sequence[Mapping[str, Any]]) -> tuple[list[Step], list[str]]:
    """The steps a preview's engine events plan (not 'same' or 'read', not provider bookkeeping), and the
    errors it reported: error diagnostics and mandatory policy violations, each one line."""
    steps: list[Step] = []
    errors: list[str] = []
    for event in events:
        pre = event.get("resourcePreEvent")
        if isinstance(pre, Mapping):
            m = pre.get("metadata") or {}
            if m.get("op") not in ("same", "read") and not is_provider(m):
                old, new = m.get("old") or {}, m.get("new")
                was = bool(old.get("protect"))
                steps.append(
                    Step(
                        op=str(m.get("op")),
                        name=resource_name(str(m.get("urn", ""))),
                        type=str(m.get("type", "")),
                        protected=was or bool(new and new.get("protect")),
                        unprotects=was and new is not None and not new.get("protect"),
                    )
                )
        diag = event.get("diagnosticEvent")
        if isinstance(diag, Mapping) and diag.get("severity") == "error":
            message = str(diag.get("message", ""))
            errors.append(one_line(message))
            # The engine refuses to plan a step on a protected resource, so it has no pre-event: take the
            # step from the refusal itself.
            for op, urn in PROTECTED_REFUSAL.findall(message):
                kind = urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]
                steps.append(Step(op=op, name=resource_name(urn), type=kind, protected=True))
        policy = event.get("policyEvent")
        if isinstance(policy, Mapping) and policy.get("enforcementLevel") == "mandatory":
            where = resource_name(str(policy.get("resourceUrn") or "")) or "the stack"
            errors.append(f"policy {policy.get('policyName')} ({where}): {one_line(str(policy.get('message')))}")
    return steps, [e for e in errors if e]


def render(review: Review, markdown: bool = False) -> str:
    """The pull-request comment (markdown) or the terminal summary (plain) of a preview."""
    r = review
    b = "**" if markdown else ""
    lines: list[str] = [MARKER, f"### fetchml-infra preview: stack `{r.stack}`", ""] if markdown else []
    if r.action == "none":
        lines.append(f"{b}No change of image{b}: stays on {r.from_image}.")
    else:
        lines.append(f"{b}{r.action.capitalize()}{b}: {r.from_image} -> {r.to_image}")
    if r.environment:
        auto = "true (a failed gate rolls back by itself)" if r.auto_rollback else "false (roll back by hand)"
        lines.append(f"- stack: environment {r.environment}, compliance mode {r.compliance_mode}, autoRollback {auto}")
        lines.append(f"- reason: {r.reason or 'none given (set one with --reason)'}")
    if r.action != "none" and r.environment:
        when = f"last passed its health gate here at {r.target_passed_at}" if r.target_passed_at else None
        lines.append(f"- {r.to_image} {when or 'has never passed its health gate here'}")
    if r.schema:
        ok, line = r.schema
        text = f"schema: {line}" if ok else f"schema: REFUSED: {line}"
        lines.append(f"- {'**' + text + '**' if markdown and not ok else text}")
    if r.switch:
        old, new = r.switch
        lines.append(
            f"- proxy switch: {old or 'nothing routed'} -> {new}, only once {new} passes its health gate "
            "(the proxy container itself is not replaced)"
        )
    lines.append(f"- containers to start: {', '.join(r.created(CONTAINER)) or 'none'}")
    lines.append(
        f"- containers to remove{' after the switch' if r.switch else ''}: {', '.join(r.deleted(CONTAINER)) or 'none'}"
    )
    replaced_containers = r.replaced(CONTAINER)
    if replaced_containers:
        lines.append(f"- containers to replace: {', '.join(replaced_containers)}")
    others = [n for n in r.replaced() if n not in replaced_containers]
    if others:
        lines.append(f"- other resources to replace: {', '.join(others)}")
    lines.append(f"- resources to update: {', '.join(r.updated()) or 'none'}")
    if set(r.created()) - set(r.created(CONTAINER)):
        lines.append(f"- resources to create: {', '.join(n for n in r.created() if n not in r.created(CONTAINER))}")
    if set(r.deleted()) - set(r.deleted(CONTAINER)):
        lines.append(f"- resources to delete: {', '.join(n for n in r.deleted() if n not in r.deleted(CONTAINER))}")
    touched = r.touched_protected()
    if touched:
        warning = f"WARNING: protected resources would be replaced, deleted or unprotected: {', '.join(touched)}"
        lines.append(f"- {'**' + warning + '**' if markdown else warning}")
    else:
        kept = ", ".join(sorted(r.protected)) or "none yet"
        lines.append(f"- no protected resource is replaced, deleted or unprotected ({kept})")
    for image, present in sorted(r.images_present.items()):
        lines.append(f"- image {image}: {'present locally' if present else 'NOT present locally; it must be pulled'}")
    chain = "intact" if r.audit_ok else "BROKEN (run `fetchml-infra audit verify`)"
    lines.append(f"- audit chain {chain}: {count_entries(r.audit_length)}, head {r.audit_head[:16] or '-'}")
    for error in r.errors:
        lines.append(f"- preview error: {error}")
    return "\n".join(lines) + "\n"
