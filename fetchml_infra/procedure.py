"""The rollback procedure as code: the manual steps of the runbook, in order, each one refusing early.

deploy:   check tag -> check denied list -> check image present -> verify chain -> set config -> up
          -> on a failed gate with autoRollback: back to the last good image, deny the failed tag.
rollback: find the target in stack history -> check image present -> verify chain -> set config -> up
          -> the post-rollback checklist (health + compliance_mode, queue state, audit chain).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fetchml_infra import (
    aftercare,
    attempt,
    audit,
    checklist,
    guard,
    history,
    host,
    preflight,
    proxy,
    review,
    schema,
)
from fetchml_infra.attempt import Attempt
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.config import ConfigError, StackConfig
from fetchml_infra.config_reader import IMAGE_TAG
from fetchml_infra.gate import current_actor
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import OperatorError, Policy, Stack, image_present

EXIT_OK = 0
EXIT_CHECKS_FAILED = 1
EXIT_REFUSED = 2
EXIT_ROLLED_BACK = 3
EXIT_FAILED = 4
AUTO_ROLLBACK_REASON = "health-check-failure"

Say = Callable[[str], None]


def require_tag(option: str, tag: str) -> None:
    if not IMAGE_TAG.match(tag):
        raise OperatorError(f"{option}: expected sha- followed by 7 to 40 lowercase hex digits, saw {tag!r}")


def load_config(stack: Stack, **overrides: str) -> StackConfig:
    try:
        return stack.config(**overrides)
    except ConfigError as exc:
        raise OperatorError(str(exc)) from exc


def _in_step_with_the_team(stack: Stack, say: Say) -> None:
    """Checkouts of a stack with a sink share its state and chain, not their config files: when the chain (with
    the sink's newer entries taken in) last moved the stack to another image than this checkout's config names,
    another operator deployed since, so take that image as the starting point."""
    values = stack.raw_config()[0]
    mine = values.get("image")
    if not mine or not values.get("auditSink"):
        return
    cfg = load_config(stack)
    log = stack.audit_log(cfg)
    shipping_.catch_up(log, shipping_of(cfg))
    last = history.last_entry(audit.entries(log), cfg.stack) if audit.verify(log).ok else None
    if last is not None and last.to_image not in (mine, history.NO_IMAGE):
        say(
            f"note: this checkout's config names {mine}, but the audit chain's last move is {last.actor}'s to "
            f"{last.to_image} ({last.time}); starting from {last.to_image}"
        )
        stack.set(image=last.to_image)


def _denied_by_the_chain(stack: Stack, cfg: StackConfig) -> list[str]:
    """A team's checkouts share the chain, not their config: on a stack with a sink, what the chain says failed
    its gate is denied too (read only when the log verifies; preflight says why when it does not)."""
    log = stack.audit_log(cfg)
    if not cfg.audit_sink or not audit.verify(log).ok:
        return []
    return history.denied(audit.entries(log), cfg.stack, AUTO_ROLLBACK_REASON)


def deploy(stack: Stack, image: str, reason: str, allow_denied: bool, say: Say, force_schema: bool = False) -> int:
    require_tag("--image", image)
    _in_step_with_the_team(stack, say)
    previous = stack.raw_config()[0].get("image")  # None on a new stack: its first deploy sets it
    current = load_config(stack, **({} if previous else {"image": image}))
    denied = [t for t in current.denied_images if t != image]  # this checkout's own list, written back below
    if image in (*current.denied_images, *_denied_by_the_chain(stack, current)) and not allow_denied:
        raise OperatorError(
            f"--image: {image} failed its health gate on stack '{stack.name}' before and is denied; "
            f"to deploy it anyway add --allow-denied"
        )
    cfg = load_config(stack, image=image, deniedImages=json.dumps(denied))
    actor = current_actor()
    say(f"deploy {image} to stack '{stack.name}' (was {previous or 'nothing: this is its first deploy'})")
    preflight.preflight(stack, cfg, say, force_schema)
    if denied != list(current.denied_images):
        stack.set(deniedImages=json.dumps(denied))
    action, _ = history.classify(audit.entries(stack.audit_log(cfg)), cfg.stack, image)
    tried = attempt.up(stack, cfg, previous, action, actor, reason, say, force_schema=force_schema)
    if tried.outcome.ok:
        say(f"deployed {image} to '{stack.name}'")
        return EXIT_OK
    if tried.outcome.verdict_on_image:
        return _after_failed_gate(stack, cfg, denied, tried, actor, say)
    return _after_failed_infrastructure(stack, current, cfg, tried, actor, say)


def _after_failed_gate(stack: Stack, cfg: StackConfig, denied: list[str], tried: Attempt, actor: str, say: Say) -> int:
    """The health gate judged the image: staging goes back by itself and denies the tag; prod waits."""
    image = cfg.image
    if not cfg.auto_rollback:
        say(
            f"deploy of {image} failed its health gate on '{stack.name}'; this stack rolls back by hand:\n"
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
    returned = attempt.up(stack, back, image, "rollback", actor, AUTO_ROLLBACK_REASON, say).outcome
    if not returned.ok:
        say(f"automatic rollback to {target} FAILED ({returned.kind}: {returned.detail})")
        say(f"  stack '{stack.name}' needs an operator now; a gate that fails never routes, so the proxy still serves")
        return EXIT_FAILED
    say(f"rolled back to {target}; {image} is denied on '{stack.name}' until deployed with --allow-denied")
    checks = [(c.name, c.ok, c.detail) for c in checklist.post_rollback(stack, back)]
    aftercare.notify_rollback(back, stack.audit_log(back), checks, say)
    return EXIT_ROLLED_BACK


def _explain(stack: Stack, cfg: StackConfig, tried: Attempt, say: Say) -> None:
    found = tried.outcome
    say(f"the update to {cfg.image} did not finish: {found.kind}: {found.detail}")
    if tried.recorded:
        say(f"  recorded: {tried.recorded}")
    elif not tried.moved:
        say("  no container changed; the config is as it was; nothing was recorded")


def _after_failed_infrastructure(
    stack: Stack, current: StackConfig, cfg: StackConfig, tried: Attempt, actor: str, say: Say
) -> int:
    """Not a verdict on the image: never deny it. When the old app is gone, bring the previous image back."""
    found = tried.outcome
    _explain(stack, cfg, tried, say)
    if tried.refused:
        if found.kind == "locked":
            say(f"  another update holds stack '{stack.name}'; run again when it has finished")
        return EXIT_REFUSED
    if found.kind in ("killed", "cancelled", "audit-failed"):
        say(f"  the stack needs reconciling: fetchml-infra recover --stack {stack.name}")
        return EXIT_FAILED
    if current.image == cfg.image:
        say(f"  there is no earlier image to restore; {cfg.image} is not denied: fix the cause and deploy it again")
        return EXIT_FAILED
    routing = proxy.routed(cfg, stack.project_dir)
    running = routing.running(host.app_containers(cfg.name_prefix), current.worker_replicas)
    if running == current.image:
        say(f"  the app still runs {current.image}; {cfg.image} is not denied")
        return EXIT_FAILED
    say(f"  {current.image} is not serving now; restoring it (not a verdict on {cfg.image}, so it is not denied)")
    reason = f"restore after {found.kind} of {cfg.image}: {found.detail}"
    back = attempt.up(stack, current, cfg.image, "rollback", actor, reason, say)
    if back.outcome.ok:
        say(f"restored {current.image} on '{stack.name}'; fix the cause above and deploy {cfg.image} again")
        return EXIT_ROLLED_BACK
    say(
        f"RESTORE FAILED: stack '{stack.name}' has no healthy app now ({back.outcome.kind}: {back.outcome.detail}).\n"
        f"  Fix the cause, then run: fetchml-infra recover --stack {stack.name}"
    )
    return EXIT_FAILED


def rollback(
    stack: Stack,
    to: str | None,
    reason: str,
    say: Say,
    allow_untested: bool = False,
    incident: Path | None = None,
    force_schema: bool = False,
) -> int:
    if not reason.strip():
        raise OperatorError("--reason: required (one readable line saying why); saw an empty reason")
    _in_step_with_the_team(stack, say)
    current = load_config(stack)
    report = aftercare.require_incident(current, incident)
    reason = aftercare.pinned_reason(reason, report, attempt.MAX_REASON)
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
    preflight.preflight(stack, cfg, say, force_schema)  # first: it refuses a broken chain, read next
    if report is not None:
        aftercare.file_incident(cfg, stack.audit_log(cfg), report, say)
    # One classification: the chain decides whether going to `to` is a rollback (it passed its gate here
    # before) and what it moves from; the header, the audit entry and history all say the same.
    action, from_image = history.classify(audit.entries(stack.audit_log(cfg)), cfg.stack, to)
    if action != "rollback" and not allow_untested:
        raise OperatorError(
            f"--to: {to} never passed its health gate on stack '{stack.name}', so going to it is a deploy of an "
            f"untested image, not a rollback; run `fetchml-infra deploy --stack {stack.name} --image {to}`, or "
            "add --allow-untested to go anyway (recorded as a deploy)"
        )
    untested = " (untested: --allow-untested)" if action != "rollback" else ""
    say(f"{action} stack '{stack.name}' from {from_image} to {to}{untested} (reason: {reason})")
    tried = attempt.up(stack, cfg, current.image, action, current_actor(), reason, say, force_schema=force_schema)
    if not tried.outcome.ok:
        _explain(stack, cfg, tried, say)
        if tried.refused:
            return EXIT_REFUSED
        say(f"  rollback to {to} failed; fix the cause, then run: fetchml-infra recover --stack {stack.name}")
        return EXIT_FAILED
    checks = checklist.post_rollback(stack, cfg)
    say("post-rollback checklist:")
    for check in checks:
        say(f"  [{'x' if check.ok else ' '}] {check.name}: {check.detail}")
    aftercare.notify_rollback(cfg, stack.audit_log(cfg), [(c.name, c.ok, c.detail) for c in checks], say)
    return EXIT_OK if all(c.ok for c in checks) else EXIT_CHECKS_FAILED


def _schema_line(cfg: StackConfig, log: str) -> tuple[bool, str] | None:
    """The schema check a move to the config's image would face (the program decides the same way: a move is
    a change from what the chain last moved the stack to)."""
    if guard.running_image(cfg, log) == cfg.image:
        return None
    try:
        checked, pending = schema.check(cfg.name_prefix, cfg.api_image, cfg.image)
    except schema.SchemaError as exc:
        return False, str(exc)
    todo = f"; {pending} migration(s) to apply on start" if pending else ""
    forced = "; overridden by forceSchema" if cfg.force_schema and not checked.ok else ""
    return checked.ok, f"{checked.line}{todo}{forced}"


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
    passed = history.last_passed_to(audit.entries(log), cfg.stack, cfg.image) if verdict.ok else None
    routed = str(stack.outputs().get("routed") or "").rpartition(":")[0]
    to = host.api_name(cfg.name_prefix, cfg.image)
    switch = (routed, to) if any(s.name == "proxy-route" for s in steps) and routed != to else None
    return review.Review(
        schema=_schema_line(cfg, stack.audit_log(cfg)),
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
        environment=cfg.environment,
        compliance_mode=cfg.compliance_mode,
        auto_rollback=cfg.auto_rollback,
        reason=cfg.deploy_reason,
        target_passed_at=passed.time if passed else None,
        switch=switch,
    )
