"""One update the CLI makes, and the truth about it: the operator lock around a procedure, and `up` with what
the engine's events say happened and whether any app container moved.

The program records what it can (the gate's failure, the audit entry's success). What it cannot record, a
move cut short before its gate or its entry ran, is recorded here: as a failure that is no verdict on the
image. A failure that moved nothing leaves nothing behind: the config goes back and no entry is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from fetchml_infra import audit, history, host, lock, outcome, preflight
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import current_actor
from fetchml_infra.outcome import Outcome
from fetchml_infra.recording import record_move, shipping_of
from fetchml_infra.workspace import OperatorError, Policy, Stack

Say = Callable[[str], None]
MAX_REASON = 200


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    moved: bool  # a new app container runs the target image
    recorded: str  # the entry the CLI appended for it, if it had to

    @property
    def refused(self) -> bool:
        """Stopped before it changed anything: another update's lock, or the program or a policy said no."""
        return self.outcome.kind == "locked" or (self.outcome.kind == "refused" and not self.moved)


def lock_path(stack: Stack) -> Path:
    return stack.project_dir / ".state" / "locks" / f"{stack.name}.lock"


@contextmanager
def operating(stack: Stack, command: str, wait: float = 0.0) -> Iterator[None]:
    """The stack's operator lock for a whole procedure, first config read to last entry: one operator at a
    time, and stack config written only under it. A second operator is refused naming the holder."""
    holder = lock.this_process(command, current_actor())
    with ExitStack() as held:
        try:
            held.enter_context(lock.operator_lock(lock_path(stack), stack.name, holder, wait))
        except lock.LockHeld as exc:
            raise OperatorError(str(exc)) from exc
        yield


def no_verdict_reason(found: Outcome, image: str) -> str:
    """One readable line for a failure of the infrastructure: what failed, and that it judges no image."""
    tail = f"; {image} never passed its gate here, this is no verdict on it"
    return f"{found.kind}: {found.detail}"[: MAX_REASON - len(tail)] + tail


def moved_to(image: str, before: Mapping[str, host.AppContainer], after: Mapping[str, host.AppContainer]) -> bool:
    """A new container has run ``image``: the running image changed. Containers that were only removed, replaced
    by others of the same image, or created but never started (a create cut short) are no move to record."""
    return any(
        c.image == image and c.started and (role not in before or before[role].id != c.id) for role, c in after.items()
    )


def up(
    stack: Stack,
    cfg: StackConfig,
    previous: str | None,
    action: str,
    actor: str,
    reason: str,
    say: Say,
    replace: tuple[str, ...] = (),
    force_schema: bool = False,
) -> Attempt:
    """Move the stack to ``cfg.image`` from config image ``previous``; classify what happened."""
    before = host.app_containers(cfg.name_prefix)
    # The reason (and a schema override) belong to this one update: set for it, then cleared, so a later plain
    # `pulumi up` is not recorded with a stale reason, nor forced.
    once = {"deployReason": reason[:MAX_REASON]} if reason else {}
    stack.set(image=cfg.image, **once, **({"forceSchema": "true"} if force_schema else {}))
    try:
        message = history.update_message(action, cfg.image, actor, reason)
        run = stack.up(message, Policy(cfg.allow_public_bind), say, replace)
    finally:
        stack.unset("deployReason")
        if force_schema:
            stack.unset("forceSchema")
    # Locked means another engine's lock: a killed run of our own leaves its lock behind too.
    others = [held.describe() for held in preflight.engine_locks(stack) if held.pid != run.pid] if not run.ok else []
    found = outcome.classify(
        run.events, returncode=run.returncode, interrupted=bool(run.interrupted_by), stack_locked=bool(others)
    )
    if found.kind == "locked":
        found = dataclasses.replace(found, detail=f"the stack is locked by {'; '.join(others)}")
    moved = moved_to(cfg.image, before, host.app_containers(cfg.name_prefix))
    if found.ok and cfg.audit_sink and (note := str(stack.outputs().get("audit_shipping") or "")):
        say(f"warning: the audit entry was {note}")  # e.g. the sink went down after the preflight
    recorded = ""
    if not found.ok and not moved and previous != cfg.image:
        if previous:
            stack.set(image=previous)
        else:  # a first deploy that moved nothing leaves the stack as new as it was
            stack.unset("image")
    if not found.ok and moved and not found.verdict_on_image:
        notes: list[str] = []
        try:
            entry = record_move(
                stack.audit_log(cfg),
                stack=cfg.stack,
                image=cfg.image,
                actor=actor,
                outcome="failure",
                reason=no_verdict_reason(found, cfg.image),
                shipping=shipping_of(cfg),
                notes=notes,
            )
            recorded = entry.render() if entry else ""
            for note in notes:
                say(f"warning: the entry for the interrupted move was {note}")
        except (audit.AuditError, ValueError) as exc:
            say(f"could not record the interrupted move in the audit log: {exc}")
    return Attempt(found, moved, recorded)
