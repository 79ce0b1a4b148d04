"""fetchml-infra snapshots and restore: the data-recovery path, kept apart from rollback.

`snapshots --stack S` lists the snapshots taken before each move; `snapshots prune` deletes the oldest beyond
the stack's retention (snapshotKeep) and records it; `restore` puts a snapshot's Redis and/or database back.
Exit codes: 0 done; 2 refused before anything changed; 4 the restore ran and failed (recorded).
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from fetchml_infra import attempt, audit, host, restore, snapshot_store, snapshots
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.console import StackOpt, WaitOpt, fail, say
from fetchml_infra.gate import current_actor
from fetchml_infra.procedure import load_config
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import OperatorError, Stack

snapshots_app = typer.Typer(help="Snapshots of the stack's data (Redis, database, artifacts manifest).")
ReasonOpt = Annotated[str, typer.Option(help="Why; recorded in the audit entry (required).")]


@snapshots_app.callback(invoke_without_command=True)
def listing(
    ctx: typer.Context,
    stack: Annotated[Optional[str], typer.Option("--stack", "-s", help="Stack name.")] = None,  # noqa: UP007
) -> None:
    """List the stack's snapshots, oldest first (those beyond snapshotKeep are marked prunable)."""
    if ctx.invoked_subcommand:
        return
    if not stack:
        fail("--stack: required, e.g. fetchml-infra snapshots --stack staging", 2)
    try:
        cfg = load_config(Stack(stack))
        found = snapshot_store.listed(cfg)
    except (OperatorError, snapshot_store.SnapshotError) as exc:
        fail(str(exc), 2)
    if not found:
        say(f"stack '{stack}' has no snapshots yet (one is taken before every deploy and rollback)")
        return
    prunable = set(snapshots.to_prune([m.id for m in found], cfg.snapshot_keep))
    for m in found:
        say(f"{m.describe()}{'  (prunable)' if m.id in prunable else ''}")
    say(f"{len(found)} snapshot(s); snapshotKeep {cfg.snapshot_keep}")


@snapshots_app.command("prune")
def prune(
    stack: StackOpt,
    reason: ReasonOpt,
    keep: Annotated[Optional[int], typer.Option(help="Keep the newest N (default: snapshotKeep).")] = None,  # noqa: UP007
    wait: WaitOpt = 0.0,
) -> None:
    """Delete the snapshots beyond the newest KEEP and append one `prune` entry naming them."""
    if not reason.strip():
        fail("--reason: required (why the snapshots go); saw an empty reason; nothing was deleted", 2)
    if keep is not None and keep < 1:
        fail(f"--keep: expected at least 1 (the newest snapshot is never pruned), saw {keep}; nothing was deleted", 2)
    try:
        s = Stack(stack)
        with attempt.operating(s, f"fetchml-infra snapshots prune --stack {stack}", wait):
            cfg = load_config(s)
            log, ship = s.audit_log(cfg), shipping_of(cfg)
            shipping_.catch_up(log, ship)
            audit.require_intact(log, consequence="Nothing was deleted.")
            audit.require_appendable(log)
            doomed = snapshots.to_prune([m.id for m in snapshot_store.listed(cfg)], keep or cfg.snapshot_keep)
            if not doomed:
                say(f"nothing to prune on '{stack}': {keep or cfg.snapshot_keep} or fewer snapshots")
                return
            gone, failed = [], ""
            for sid in doomed:  # one by one: a failure part-way is recorded for what went
                try:
                    snapshot_store.delete(cfg, sid)
                except snapshot_store.SnapshotError as exc:
                    failed = str(exc)
                    break
                gone.append(sid)
            if not gone:
                fail(f"{failed}; nothing was deleted", 2)
            image = str(s.outputs().get("image") or "none")
            what = f"pruned {len(gone)} snapshot(s) {gone[0]}..{gone[-1]}"
            entry, note = shipping_.append(
                log,
                ship,
                action="prune",
                outcome="failure" if failed else "success",
                from_image=image,
                to_image=image,
                actor=current_actor(),
                reason=audit.clean_value(f"{what}: {reason[:200]}" + (f"; FAILED: {failed}" if failed else ""))[:480],
                stack=stack,
            )
    except (OperatorError, audit.AuditError, snapshot_store.SnapshotError) as exc:
        fail(str(exc), 2)
    if failed:
        say(entry.render())
        fail(f"pruned {', '.join(gone)}, then: {failed}", 4)
    say(f"pruned {len(doomed)} snapshot(s) of '{stack}': {', '.join(doomed)}")
    say(entry.render())
    if note:
        say(f"warning: the prune entry was {note}")


def restore_command(
    stack: StackOpt,
    snapshot: Annotated[str, typer.Option(help="Snapshot id, from `fetchml-infra snapshots --stack S`.")],
    reason: ReasonOpt,
    redis: Annotated[bool, typer.Option("--redis", help="Restore the Redis queue.")] = False,
    db: Annotated[bool, typer.Option("--db", help="Restore the database.")] = False,
    incident: Annotated[str, typer.Option(help="Incident reference; required on prod and HIPAA stacks.")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="Confirm without the prompt (prod and HIPAA stacks).")] = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Data recovery, not a rollback: stop the app, restore the chosen parts, start it at the current image,
    health-check it, and append a `restore` entry."""
    try:
        s = Stack(stack)
        with attempt.operating(s, f"fetchml-infra restore --stack {stack}", wait):
            cfg = load_config(s)
            confirmed = yes or _confirm(cfg.stack, cfg.environment == "prod" or cfg.compliance_mode == "hipaa")
            ask = restore.Ask(snapshot, reason, redis, db, incident, confirmed)
            code = restore.restore(s, cfg, ask, say)
    except (OperatorError, audit.AuditError) as exc:
        fail(str(exc), getattr(exc, "code", 2))
    except host.HostError as exc:  # Docker stopped answering before the restore changed anything
        fail(f"{exc}; nothing was changed", 2)
    raise typer.Exit(code)


def _confirm(stack: str, guarded: bool) -> bool:
    """On a guarded stack with a terminal: the operator types the stack's name."""
    if not guarded or not sys.stdin.isatty():
        return False
    typed = str(typer.prompt(f"This replaces live data on '{stack}'. Type the stack name to go on"))
    return typed == stack
