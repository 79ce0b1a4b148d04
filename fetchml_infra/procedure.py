"""The rollback procedure as code: the manual steps of the runbook, in order, each one refusing early.

deploy:   check tag -> check denied list -> check image present -> verify chain -> set config -> up
          -> on a failed gate with autoRollback: back to the last good image, deny the failed tag.
rollback: find the target in stack history -> check image present -> verify chain -> set config -> up
          -> the post-rollback checklist (health + compliance_mode, queue state, audit chain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fetchml_infra import audit, health, history, review
from fetchml_infra.config import IMAGE_TAG, ConfigError, StackConfig
from fetchml_infra.gate import current_actor, record_move
from fetchml_infra.workspace import OperatorError, Policy, Stack, image_present, pull, queue_state

EXIT_OK = 0
EXIT_CHECKS_FAILED = 1
EXIT_ROLLED_BACK = 3
EXIT_FAILED = 4
AUTO_ROLLBACK_REASON = "health-check-failure"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def require_tag(option: str, tag: str) -> None:
    if not IMAGE_TAG.match(tag):
        raise OperatorError(f"{option}: expected sha- followed by 7 to 40 lowercase hex digits, saw {tag!r}")


def load_config(stack: Stack, **overrides: str) -> StackConfig:
    try:
        return stack.config(**overrides)
    except ConfigError as exc:
        raise OperatorError(str(exc)) from exc


def preflight(cfg: StackConfig, log: str, recorded: Mapping[str, Any], say: Say) -> None:
    """Before anything changes: the target images exist (or pull), and the audit chain verifies and still
    reaches the head the last update recorded in the stack outputs (a cut-off or rewritten log is refused)."""
    for image in (cfg.api_image, cfg.worker_image):
        if image_present(image):
            say(f"  ok  image {image} is present locally")
            continue
        pulled, detail = pull(image)
        if not pulled:
            raise OperatorError(
                f"image {image} is neither present locally nor pullable: {detail}\n"
                f"Nothing was changed. Build or load it (`docker load`), then run again."
            )
        say(f"  ok  image {image} pulled")
    head, length = recorded_head(recorded)
    try:
        verdict = audit.require_intact(log, head, length)
    except audit.AuditError as exc:
        raise OperatorError(str(exc), code=EXIT_CHECKS_FAILED) from exc
    say(f"  ok  audit chain intact ({verdict.length} entries{', extends the recorded head' if head else ''})")


def recorded_head(outputs: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The chain head and length the last update recorded in the stack outputs (none before the first)."""
    length = outputs.get("audit_length")
    return outputs.get("audit_head"), int(length) if length is not None else None


def _record_unrecorded_failure(cfg: StackConfig, log: str, actor: str, summary: str) -> None:
    """An update that failed before its gate ran (say, a container that would not start) left no entry;
    the procedure wants every attempt on record, so write it here."""
    last = history.last_entry(audit.entries(log), cfg.stack)
    if last is not None and last.to_image == cfg.image:
        return  # the gate recorded the failure, or the image change went through and something else failed
    first_line = summary.strip().splitlines()[-1] if summary.strip() else "update failed"
    record_move(
        log,
        stack=cfg.stack,
        image=cfg.image,
        actor=actor,
        outcome="failure",
        reason=audit.clean_value("update-failed: " + first_line)[:200],
    )


def _up(stack: Stack, cfg: StackConfig, action: str, actor: str, reason: str, say: Say) -> bool:
    # The reason belongs to this one update: set for it, then cleared, so a later plain `pulumi up`
    # is not recorded with a stale reason.
    stack.set(image=cfg.image, **({"deployReason": reason} if reason else {}))
    try:
        message = history.update_message(action, cfg.image, actor, reason)
        result = stack.up(message, Policy(cfg.allow_public_bind), on_output=say)
    finally:
        stack.unset("deployReason")
    if not result.ok:
        _record_unrecorded_failure(cfg, stack.audit_log(cfg), actor, result.summary)
    return result.ok


def deploy(stack: Stack, image: str, reason: str, allow_denied: bool, say: Say) -> int:
    require_tag("--image", image)
    current = load_config(stack)
    denied = [t for t in current.denied_images if t != image]
    if image in current.denied_images and not allow_denied:
        raise OperatorError(
            f"--image: {image} failed its health gate on stack '{stack.name}' before and is denied; "
            f"to deploy it anyway add --allow-denied"
        )
    overrides = {"image": image, "deniedImages": json.dumps(denied)}
    cfg = load_config(stack, **overrides)
    actor = current_actor()
    say(f"deploy {image} to stack '{stack.name}' (was {current.image})")
    preflight(cfg, stack.audit_log(cfg), stack.outputs(), say)
    if denied != list(current.denied_images):
        stack.set(deniedImages=json.dumps(denied))
    action, _ = history.classify(audit.entries(stack.audit_log(cfg)), cfg.stack, image)
    if _up(stack, cfg, action, actor, reason, say):
        say(f"deployed {image} to '{stack.name}'")
        return EXIT_OK
    if not cfg.auto_rollback:
        say(
            f"deploy of {image} failed on '{stack.name}'; this stack rolls back by hand:\n"
            f"  fetchml-infra rollback --stack {stack.name} --reason {AUTO_ROLLBACK_REASON}"
        )
        return EXIT_FAILED
    target = history.rollback_target(stack.history(), image)
    if target is None:
        say(f"deploy of {image} failed and no earlier image ever deployed successfully; nothing to roll back to")
        return EXIT_FAILED
    say(f"deploy of {image} failed its health gate; rolling back to {target} (autoRollback)")
    stack.set(deniedImages=json.dumps([*denied, image]))
    back = load_config(stack, image=target)
    if not _up(stack, back, "rollback", actor, AUTO_ROLLBACK_REASON, say):
        say(f"automatic rollback to {target} FAILED; stack '{stack.name}' needs an operator now")
        return EXIT_FAILED
    say(f"rolled back to {target}; {image} is denied on '{stack.name}' until deployed with --allow-denied")
    return EXIT_ROLLED_BACK


def rollback(stack: Stack, to: str | None, reason: str, say: Say) -> int:
    current = load_config(stack)
    if to is None:
        to = history.rollback_target(stack.history(), current.image)
        if to is None:
            raise OperatorError(
                f"--to: stack '{stack.name}' has no earlier successfully deployed image than {current.image}; "
                f"name one with --to sha-<hex>"
            )
    require_tag("--to", to)
    if to == current.image:
        raise OperatorError(f"--to: {to} is already the deployed image of stack '{stack.name}'")
    cfg = load_config(stack, image=to)
    say(f"rollback stack '{stack.name}' from {current.image} to {to} (reason: {reason})")
    preflight(cfg, stack.audit_log(cfg), stack.outputs(), say)
    if not _up(stack, cfg, "rollback", current_actor(), reason, say):
        say(f"rollback to {to} failed; the failure is in the audit log {stack.audit_log(cfg)}")
        return EXIT_FAILED
    checks = post_rollback_checks(stack, cfg)
    say("post-rollback checklist:")
    for check in checks:
        say(f"  [{'x' if check.ok else ' '}] {check.name}: {check.detail}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_CHECKS_FAILED


def post_rollback_checks(stack: Stack, cfg: StackConfig) -> list[Check]:
    """The procedure's post-rollback actions that a machine can do: health, queue state, audit chain."""
    outputs = stack.outputs()
    required = cfg.compliance_mode if cfg.compliance_mode != "none" else None
    polled = health.poll(
        cfg.health_url,
        expected_version=cfg.image,
        required_compliance=required,
        timeout=min(cfg.health_timeout_seconds, 15),
    )
    v = polled.verdict
    checks = [Check("health", v.healthy, f"{cfg.health_url}: {v.reason}, version {v.version or 'not reported'}")]
    if required:
        checks.append(Check("compliance_mode", v.compliance_mode == required, f"reported {v.compliance_mode!r}"))
    try:
        queue = queue_state(str(outputs.get("redis_address", f"127.0.0.1:{cfg.redis_host_port}")))
        detail = ", ".join(f"{k} {n}" for k, n in queue.items()) + (
            "; look for stuck jobs" if queue["running"] or queue["failed"] else ""
        )
        checks.append(Check("queue state", True, detail))
    except Exception as exc:  # a check that cannot run is reported, not hidden
        checks.append(Check("queue state", False, f"Redis did not answer: {exc}"))
    log = stack.audit_log(cfg)
    verdict = audit.verify(log, *recorded_head(outputs), allow_longer=True)
    detail = f"{verdict.length} entries, head {verdict.head[:12]}" if verdict.ok else verdict.detail
    checks.append(Check("audit chain", verdict.ok, detail))
    return checks


def preview(stack: Stack) -> review.Review:
    """Everything a reviewer needs about the change the stack config describes, without changing anything."""
    cfg = load_config(stack)
    deployed = str(stack.outputs().get("image") or history.NO_IMAGE)
    if cfg.image == deployed:
        action = "none"
    else:
        action, _ = history.classify(audit.entries(stack.audit_log(cfg)), cfg.stack, cfg.image)
    steps, errors = stack.preview_steps(Policy(cfg.allow_public_bind))
    log = stack.audit_log(cfg)
    verdict = audit.verify(log)
    return review.Review(
        stack=stack.name,
        from_image=deployed,
        to_image=cfg.image,
        action=action,
        steps=steps,
        protected=stack.protected(),
        images_present={image: image_present(image) for image in (cfg.api_image, cfg.worker_image)},
        audit_head=verdict.head,
        audit_length=verdict.length,
        audit_ok=verdict.ok,
        errors=errors,
    )
