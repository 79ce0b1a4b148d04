"""fetchml-infra: the operator's commands (init, deploy, rollback, preview, history, status, recover, destroy,
audit, queue).

Exit codes: 0 done; 1 a check failed (audit chain broken, post-rollback checklist not all green);
2 refused before anything changed (bad argument, denied or missing image, invalid config);
3 the deploy failed its health gate and the stack rolled back automatically; 4 the update failed and nothing
rolled it back (production, or no earlier good image, or the rollback failed too).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fetchml_infra import (
    attempt,
    audit,
    cli_sink,  # noqa: F401  (adds keygen, init-sink, sync, check-sink to audit_app)
    health,
    history,
    host,
    jobqueue,
    lock,
    offline,
    preflight,
    procedure,
    proxy,
    recover,
    review,
    secrets_init,
    state_upgrade,
    swarm_status,
    teardown,
    timeline,
    workspace,
)
from fetchml_infra.cli_audit import audit_app
from fetchml_infra.cli_data import restore_command, snapshots_app
from fetchml_infra.cli_queue import queue_app
from fetchml_infra.console import StackOpt, WaitOpt, console, fail, say
from fetchml_infra.gate import CLI_NOTIFIES
from fetchml_infra.workspace import OperatorError, Stack

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
app.add_typer(audit_app, name="audit")
app.add_typer(queue_app, name="queue")
app.add_typer(snapshots_app, name="snapshots")
app.command("restore")(restore_command)
state_app = typer.Typer(no_args_is_help=True, help="The Pulumi state backend the stacks live in.")
app.add_typer(state_app, name="state")


ForceSchemaOpt = Annotated[
    bool, typer.Option("--force-schema", help="Go although the target's labels say it cannot run on the live schema.")
]


def _stack(name: str) -> Stack:
    offline.apply()
    os.environ[CLI_NOTIFIES] = "1"  # the CLI sends the notify hook itself, with the whole checklist
    return Stack(name)


@app.command()
def deploy(
    stack: StackOpt,
    image: Annotated[str, typer.Option(help="Image tag to deploy: sha-<hex>.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit entry.")] = "",
    allow_denied: Annotated[bool, typer.Option(help="Deploy a tag that failed its health gate before.")] = False,
    wait: WaitOpt = 0.0,
    force_schema: ForceSchemaOpt = False,
) -> None:
    """Set the image and run `pulumi up`; on staging a failed health gate rolls back by itself."""
    try:
        s = _stack(stack)
        with attempt.operating(s, f"fetchml-infra deploy --stack {stack} --image {image}", wait):
            code = procedure.deploy(s, image, reason, allow_denied, say, force_schema)
    except OperatorError as exc:
        fail(str(exc), exc.code)
    raise typer.Exit(code)


@app.command()
def rollback(
    stack: StackOpt,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit entry (required).")],
    to: Annotated[Optional[str], typer.Option(help="Target tag; default: the last good image before now.")] = None,  # noqa: UP007
    allow_untested: Annotated[
        bool, typer.Option("--allow-untested", help="Go to a --to tag that never passed its gate here (a deploy).")
    ] = False,
    wait: WaitOpt = 0.0,
    incident: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option(help="Incident report (why, impact on PHI handling, exposure risk); required on HIPAA stacks."),
    ] = None,
    force_schema: ForceSchemaOpt = False,
) -> None:
    """Image-only rollback: the queue, the artifacts and the audit chain stay as they are."""
    try:
        s = _stack(stack)
        with attempt.operating(s, f"fetchml-infra rollback --stack {stack}", wait):
            code = procedure.rollback(s, to, reason, say, allow_untested, incident, force_schema)
    except OperatorError as exc:
        fail(str(exc), exc.code)
    raise typer.Exit(code)


@app.command("init")
def init_stack(
    stack: StackOpt,
    secrets_file: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option(help="KEY=VALUE lines, mode 600: minioRootUser, minioRootPassword[, minioAppSecretKey]."),
    ] = None,
    rotate: Annotated[bool, typer.Option(help="Replace secrets already set (then `pulumi up` applies them).")] = False,
    secrets_provider: Annotated[str, typer.Option(help="For a new stack: a KMS URL; default passphrase.")] = "",
) -> None:
    """Create a stack (if new) and set its secrets from a file or a hidden prompt, never from the command
    line. Prod and HIPAA stacks refuse the development passphrase. The app's MinIO key is generated."""
    offline.apply()
    given = None
    try:
        if secrets_file is not None:
            given = secrets_init.parse_file(secrets_file)
        ask = (lambda key: typer.prompt(key, hide_input=True, confirmation_prompt=True)) if sys.stdin.isatty() else None
        done = secrets_init.init_stack(
            stack, workspace.project_home(), os.environ, given, ask, rotate, secrets_provider
        )  # fmt: skip
    except ValueError as exc:
        fail(str(exc), 2)
    except RuntimeError as exc:
        fail(f"init stopped part-way: {exc}", 4)
    for line in done:
        say(line)
    say(
        f"next: fetchml-infra deploy --stack {stack} --image sha-<tag>"
        if not rotate
        else f"next: `pulumi up --stack {stack}` applies the new secrets (MinIO restarts; data and image stay)"
    )


@app.command("destroy")
def destroy_stack(
    stack: StackOpt,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete the data volumes.")] = False,
    confirm_stack: Annotated[str, typer.Option(help="The stack name again: confirms --delete-data.")] = "",
    wait: WaitOpt = 0.0,
) -> None:
    """Remove the app and the stack, append a `destroy` entry, and keep the data volumes (the Redis queue and
    the MinIO artifacts) unless --delete-data, confirmed by the stack name (prompted on a terminal)."""
    if not reason.strip():
        fail("--reason: required (one readable line saying why); saw an empty reason", 2)
    if delete_data and confirm_stack != stack:
        typed = typer.prompt(f"type '{stack}' to delete its data volumes for good") if sys.stdin.isatty() else ""
        if typed != stack:
            fail(f"--delete-data: not confirmed (pass --confirm-stack {stack}); nothing was changed", 2)
    try:
        s = _stack(stack)
        cfg = procedure.load_config(s)
        with attempt.operating(s, f"fetchml-infra destroy --stack {stack}", wait):
            code = teardown.destroy(s, cfg, reason, delete_data, say)
    except (OperatorError, audit.AuditError) as exc:
        fail(str(exc), getattr(exc, "code", 2))
    raise typer.Exit(code)


@app.command("recover")
def recover_stack(stack: StackOpt, wait: WaitOpt = 0.0) -> None:
    """After a killed CLI or engine, a host crash or an unwritable log: clear a stale lock and pending
    operations, refresh, record any move no entry records, and bring the app back to the last image that
    passed its gate. Prints what it did."""
    try:
        s = _stack(stack)
        with attempt.operating(s, f"fetchml-infra recover --stack {stack}", wait):
            code = recover.recover(s, lambda **o: procedure.load_config(s, **o), say)
    except (OperatorError, audit.AuditError) as exc:
        fail(str(exc), getattr(exc, "code", 2))
    raise typer.Exit(code)


@app.command("preview")
def show_preview(
    stack: StackOpt,
    markdown: Annotated[bool, typer.Option("--markdown", help="Render the pull-request comment.")] = False,
) -> None:
    """What `pulumi up` would do: deploy or rollback, what is replaced, whether anything protected moves."""
    try:
        summary = procedure.preview(_stack(stack))
    except OperatorError as exc:
        print(review.render_blocked(stack, str(exc), markdown=markdown), end="")  # a PR always gets a comment
        fail(str(exc), exc.code)
    print(review.render(summary, markdown=markdown), end="")
    raise typer.Exit(1 if summary.touched_protected() or summary.errors or not summary.audit_ok else 0)


@app.command("history")
def show_history(stack: StackOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The stack's one timeline, newest first: every audit entry (manual, adopted and failed ones included)
    and every update that wrote none, with time (UTC), action, from, to, outcome, actor and reason."""
    try:
        s = _stack(stack)
        log = s.audit_log(procedure.load_config(s))
        entries = audit.entries(log) if Path(log).exists() else []
        rows = timeline.merge(s.history(), entries, stack)
    except (OperatorError, audit.AuditError) as exc:
        fail(str(exc), getattr(exc, "code", 2))
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    # One line per row, never cut to the terminal's width: tags and reasons are what an operator greps for.
    say(f"stack {stack}: time (UTC), action, from -> to, outcome, actor, reason [source]")
    for r in rows:
        move = f"{r.from_image} -> {r.to_image}"
        say(f"{r.time}  {r.action:<8}  {move}  {r.outcome:<7}  {r.actor}  {r.reason}  [{r.source}]")


@app.command()
def status(stack: StackOpt) -> None:
    """Deployed image, running containers, live health, compliance mode, audit head, queue depth, locks, and
    any disagreement between config, outputs, containers and the audit chain."""
    try:
        s = _stack(stack)
        cfg = procedure.load_config(s)
    except OperatorError as exc:
        fail(str(exc), exc.code)
    outputs = s.outputs()
    apps = host.app_containers(cfg.name_prefix)
    if not outputs and not apps:
        say(
            f"stack {stack} has never been deployed: nothing runs yet, and its audit log starts with its first "
            f"deploy (`fetchml-infra deploy --stack {stack} --image sha-<commit>`)"
        )
        raise typer.Exit(1)
    polled = health.poll(
        cfg.health_url, expected_version=cfg.image, required_compliance=cfg.required_compliance, timeout=3
    )
    log = str(outputs.get("audit_log", s.audit_log(cfg)))
    verdict = audit.verify(log)
    last = history.last_entry(audit.entries(log), cfg.stack) if verdict.ok else None
    engine_locks = preflight.engine_locks(s)
    operator = lock.current_holder(attempt.lock_path(s))
    table = Table("", "", title=f"stack {stack}", show_header=False)
    table.add_row("image (config)", cfg.image)
    table.add_row("image (last completed update)", str(outputs.get("image", "-")))
    if cfg.target == "swarm":
        rows, running, drift = swarm_status.report(cfg)
    else:
        routing = proxy.routed(cfg, s.project_dir)
        rows = [("containers", host.describe(apps, cfg.worker_replicas, routing.image or cfg.image))]
        rows.append(("proxy", routing.line))
        running, drift = routing.running(apps, cfg.worker_replicas), []
    for row in rows:
        table.add_row(*row)
    table.add_row("health", f"{polled.verdict.reason} ({cfg.health_url})")
    table.add_row(
        "compliance_mode", f"{polled.verdict.compliance_mode or 'not reported'} (config: {cfg.compliance_mode})"
    )
    table.add_row(
        "audit", f"{'intact' if verdict.ok else 'BROKEN: ' + verdict.detail}, {audit.count_entries(verdict.length)}"
    )
    table.add_row("audit head", verdict.head)
    table.add_row("last move", f"{last.action} {last.outcome} {last.from_image} -> {last.to_image}" if last else "-")
    table.add_row("operator", operator.describe() if operator else "free")
    table.add_row("engine lock", "; ".join(lk.describe() for lk in engine_locks) or "free")
    stuck = 0
    try:
        counts = jobqueue.state(str(outputs.get("redis_address", "")))
        stuck = counts["stuck"]
        table.add_row("queue", jobqueue.describe(counts))
    except Exception as exc:  # status reports, it does not stop
        table.add_row("queue", f"Redis did not answer: {exc}")
    found = (
        recover.disagreements(
            config_image=cfg.image,
            deployed=outputs.get("image"),
            running=running,
            chain_to=last.to_image if last else None,
            locks=[lk.describe() for lk in engine_locks if lock.holder_gone(lk)],
        )
        + drift
    )
    table.add_row(
        "disagreements", "; ".join(found) + f" (run: fetchml-infra recover --stack {stack})" if found else "none"
    )
    console.print(table)
    if stuck:  # below the table, so that the command is one uncut line
        say(f"stuck jobs: put them back with: fetchml-infra queue requeue-stuck --stack {stack}")
    raise typer.Exit(0 if polled.verdict.healthy and verdict.ok and not found and not stuck else 1)


@state_app.command("upgrade")
def upgrade_state(stack: StackOpt) -> None:
    """Upgrade the stack's file backend from Pulumi's legacy layout, which pulumi v3.275.0 and later refuse,
    to the project layout. One-way (pulumi older than v3.64.0 cannot read the result); a copy of .pulumi is
    kept beside it first."""
    offline.apply()
    raise typer.Exit(state_upgrade.upgrade_stack_backend(stack, os.environ, say))


def main() -> None:
    app()
