"""`fetchml-infra recover`: after a killed CLI or engine, a host crash or an unwritable log, bring the records
and the running app back into one story, appending what happened and editing nothing.

    1. a stale engine lock (its holder provably gone) is removed; a live one refuses;
    2. a move no entry records (containers run an image the chain's last move is not to) is appended, with
       `reason=recovered: ...`, success only if the health check passes now;
    3. an app container an interrupted create left behind (unknown to the state) is removed; pending
       operations are cleared;
    4. refresh: the state learns which containers really exist;
    5. the app converges on the newest image that passed its gate (gated, recorded like any move).

And the disagreements `status` shows (pure).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from fetchml_infra import attempt, audit, health, history, host, lock, outcome, preflight, proxy
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import current_actor
from fetchml_infra.recording import record_move, shipping_of
from fetchml_infra.workspace import OperatorError, Stack

Say = Callable[[str], None]


def disagreements(
    *, config_image: str, deployed: str | None, running: str | None, chain_to: str | None, locks: list[str]
) -> list[str]:
    """What the records and the host disagree on; empty when they tell one story."""
    found = [f"stale engine lock: {lk}" for lk in locks]
    if running is None:
        found.append("the app containers are not all running one image")
    elif chain_to is not None and running != chain_to:
        found.append(f"containers run {running} but the audit chain's last move is to {chain_to}")
    if deployed is not None and running is not None and running != deployed:
        found.append(f"containers run {running} but the last completed update deployed {deployed}")
    if deployed is not None and config_image != deployed:
        found.append(f"config image {config_image} is not deployed (deployed: {deployed})")
    return found


def _clear_locks(stack: Stack, say: Say) -> None:
    for held in preflight.engine_locks(stack):
        if not lock.holder_gone(held):
            raise OperatorError(
                f"stack '{stack.name}' is locked by {held.describe()}, which is still running or on another "
                f"host; nothing was changed. Wait for it to finish, then run recover again."
            )
        held.path.unlink(missing_ok=True)
        held.path.with_name(held.path.name + ".attrs").unlink(missing_ok=True)  # the blob store's metadata
        say(f"  removed the engine lock left by {held.describe()} (that process is gone)")


def _remove_orphans(cfg: StackConfig, deployment: Mapping[str, Any], say: Say) -> None:
    """A create cut short (killed, or cancelled while the provider was creating) can leave a container the
    state never learned of; its name then blocks the stack's own create."""
    for c in preflight.orphans(cfg, deployment):
        host.remove_container(c.id)
        say(f"  removed container {c.name} ({c.id[:12]}): created by an interrupted update, unknown to the state")


def _clear_pending(stack: Stack, deployment: dict[str, Any], say: Say) -> None:
    pending = deployment.get("pending_operations") or []
    if not pending:
        return
    deployment["pending_operations"] = []
    stack.import_deployment(deployment)
    ops = ", ".join(
        f"{op.get('type')} {outcome.resource_name(op.get('resource', {}).get('urn', ''))}" for op in pending
    )
    say(f"  cleared {len(pending)} pending operation(s): {ops}")


def _record_unrecorded(stack: Stack, cfg: StackConfig, log: str, say: Say) -> None:
    apps = host.app_containers(cfg.name_prefix)
    strays = host.images_other_than(apps, *history.accounted_for(audit.entries(log), cfg.stack))
    if not strays:
        return
    image = strays[0]
    running = proxy.routed(cfg, stack.project_dir).running(apps, cfg.worker_replicas)
    polled = health.poll(
        cfg.health_url,
        expected_version=image,
        required_compliance=cfg.required_compliance,
        timeout=min(cfg.health_timeout_seconds, 15),
    )
    healthy = running == image and polled.verdict.healthy
    state = host.describe(apps, cfg.worker_replicas, image)
    reason = audit.clean_value(
        f"recovered: containers ran {image} with no entry for the move ({state}); health now: "
        f"{'passed' if healthy else polled.verdict.reason}"
    )[: attempt.MAX_REASON]
    notes: list[str] = []
    entry = record_move(
        log,
        stack=cfg.stack,
        image=image,
        actor=current_actor(),
        outcome="success" if healthy else "failure",
        reason=reason,
        shipping=shipping_of(cfg),
        notes=notes,
    )
    if entry is not None:
        say(f"  recorded the unrecorded move: {entry.render()}")
    for note in notes:
        say(f"  warning: that entry was {note}")


def _vanished(deployment: Mapping[str, Any], image: str) -> tuple[str, ...]:
    """URNs of ``image``'s app containers that the state still names but the host no longer has (a cut-off
    update, or someone's `docker rm`): refresh keeps them in the state, so the next up must replace them.
    Those of other images go anyway, as the program no longer declares them."""
    containers = [r for r in deployment.get("resources", []) if r.get("type") == "docker:index/container:Container"]
    ids = host.existing_containers(str(r["id"]) for r in containers if r.get("id"))
    mine = re.compile(rf"^(api-{re.escape(image)}|worker-{re.escape(image)}-[0-9]+|proxy|redis|minio)$")
    return tuple(
        str(r["urn"])
        for r in containers
        if (r.get("pendingReplacement") or r.get("id") not in ids) and mine.match(outcome.resource_name(str(r["urn"])))
    )


def recover(stack: Stack, load: Callable[..., StackConfig], say: Say) -> int:
    """Returns the exit code: 0 when the stack ends healthy and consistent, 4 when the app could not be brought
    back (the message says why)."""
    say(f"recover stack '{stack.name}':")
    cfg = load()
    log = stack.audit_log(cfg)
    audit.require_appendable(log)
    _clear_locks(stack, say)
    # What ran is recorded before anything is removed: an orphan that ran the new image was a move too.
    _record_unrecorded(stack, cfg, log, say)
    deployment = stack.deployment()
    _remove_orphans(cfg, deployment, say)
    _clear_pending(stack, deployment, say)
    refreshed = stack.refresh(on_output=lambda _line: None)
    if not refreshed.ok:
        found = outcome.classify(refreshed.events, returncode=refreshed.returncode)
        raise OperatorError(f"refresh failed ({found.kind}: {found.detail}); fix that, then run recover again", code=4)
    say("  refreshed the state from the Docker engine")
    passed = history.last_passed(audit.entries(log), cfg.stack)
    target = passed.to_image if passed else cfg.image
    routing = proxy.routed(cfg, stack.project_dir)
    running = routing.running(host.app_containers(cfg.name_prefix), cfg.worker_replicas)
    vanished = _vanished(stack.deployment(), target)
    last = history.last_entry(audit.entries(log), cfg.stack)
    recorded = last is None or last.to_image == target  # else the chain still ends on a failed release
    if running == target and stack.outputs().get("image") == target and not vanished and recorded:
        if cfg.image != target:
            say(f"  note: config image {cfg.image} is not deployed; deploy it with fetchml-infra deploy")
        say(f"  the app runs {target}, the last image that passed its gate; nothing else to do")
        return 0
    if cfg.image != target:
        say(f"  config image was {cfg.image}; set to {target}, the last image that passed its gate")
    action, _ = history.classify(audit.entries(log), cfg.stack, target)
    if vanished:
        say(f"  to create again (gone from the host): {', '.join(outcome.resource_name(u) for u in vanished)}")
    reason = f"recovered: back to {target}"
    tried = attempt.up(stack, load(image=target), cfg.image, action, current_actor(), reason, say, vanished)
    if tried.outcome.ok:
        say(f"  the app runs {target} again")
        return 0
    say(f"  could not bring the app back: {tried.outcome.kind}: {tried.outcome.detail}")
    return 4
