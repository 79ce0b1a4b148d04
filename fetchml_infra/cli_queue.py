"""fetchml-infra queue: the one repair the job queue needs, stuck jobs, done on purpose and audited.

A rollback never touches queue state; this is a separate, explicit queue action with its own audit entry
(action ``requeue``, which moves no image)."""

from __future__ import annotations

from typing import Annotated

import typer

from fetchml_infra import audit, jobqueue, offline
from fetchml_infra.audit import shipping
from fetchml_infra.console import StackOpt, fail, say
from fetchml_infra.gate import current_actor
from fetchml_infra.procedure import load_config
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import OperatorError, Stack

queue_app = typer.Typer(no_args_is_help=True, help="The stack's job queue (Redis).")


@queue_app.command("requeue-stuck")
def requeue_stuck(
    stack: StackOpt,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit entry.")] = "worker died mid-job",
    settle: Annotated[float, typer.Option(help="Seconds a job must stay without a heartbeat.")] = (
        jobqueue.SETTLE_SECONDS
    ),
) -> None:
    """Put back on the pending list every running job that no live worker holds (no heartbeat now and
    SETTLE seconds later), and append one `requeue` entry naming them. Exit 0; 2 when refused."""
    offline.apply()
    try:
        s = Stack(stack)
        cfg = load_config(s)
        log = s.audit_log(cfg)
        ship = shipping_of(cfg)  # before anything moves: the requeue entry must be writable, through the sink
        shipping.catch_up(log, ship)  # the team's lines first (a torn line the sink holds whole, completed)
        audit.require_intact(log, consequence="Nothing was requeued.")
        audit.require_appendable(log)
        address = str(s.outputs().get("redis_address") or f"127.0.0.1:{cfg.redis_host_port}")
    except (OperatorError, audit.AuditError) as exc:
        fail(str(exc), 2)
    if not reason.strip():
        fail("--reason: expected why the jobs are requeued, saw an empty text; nothing was requeued", 2)
    try:
        r = jobqueue.connect(address)
        stuck = jobqueue.find_stuck(r, settle)
        moved = jobqueue.requeue(r, stuck)
    except Exception as exc:  # Redis down: say so, change nothing here
        fail(f"Redis at {address} did not answer: {exc}; nothing was requeued", 2)
    if not moved:
        say(f"no stuck job on stack '{stack}' (every running job has a live worker)")
        raise typer.Exit(0)
    names = ", ".join(moved)
    try:
        entry, note = shipping.append(
            log,
            ship,
            action="requeue",
            outcome="success",
            from_image="-",
            to_image="-",
            actor=current_actor(),
            reason=audit.clean_value(f"requeued {len(moved)} stuck job(s): {names}: {reason}")[:400],
            stack=stack,
        )
    except (audit.AuditError, ValueError, OSError) as exc:
        fail(f"requeued {names}, but its audit entry could not be written: {exc}", 2)
    say(f"requeued {len(moved)} stuck job{'s' if len(moved) != 1 else ''} on '{stack}': {names}")
    say(entry.render())
    if note:
        say(f"warning: the requeue entry was {note}")
