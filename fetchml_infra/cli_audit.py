"""fetchml-infra audit: verify, append to, read, adopt and seal the hash-chained audit log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from fetchml_infra import audit
from fetchml_infra.audit import manual, shipping, view
from fetchml_infra.console import LogOpt, StackOpt, fail, say
from fetchml_infra.gate import current_actor
from fetchml_infra.recording import shipping_for_log
from fetchml_infra.workspace import OperatorError

ActorOpt = Annotated[str, typer.Option(help="Who; default $FETCHML_ACTOR or the OS user.")]
audit_app = typer.Typer(
    no_args_is_help=True, help="Verify, append to, read, adopt and seal the hash-chained audit log."
)


def _write(make: Callable[[], tuple[audit.Entry, str]]) -> None:
    """Write one entry and print it (and why it did not reach the sink); a refusal is exit 2, nothing written."""
    try:
        entry, note = make()
    except (ValueError, audit.AuditError, OperatorError) as exc:
        fail(str(exc), 2)
    say(entry.render())
    if note:
        say(f"warning: the entry was {note}")


def _shipping(stack: str, log: Path) -> shipping.Shipping | None:
    try:
        return shipping_for_log(stack, str(log))
    except (OperatorError, ValueError) as exc:
        fail(str(exc), 2)


def _require_log(log: Path) -> None:
    """No false green: a mistyped --log is an error, not an empty, intact chain."""
    if not log.is_file():
        fail(f"--log: no audit log at {log} (a stack's log is created by its first deploy); check the path", 2)
    try:
        log.open("rb").close()
    except OSError as exc:
        fail(f"--log: cannot read {log}: {exc.strerror}", 2)


@audit_app.command("verify")
def audit_verify(
    log: LogOpt,
    head: Annotated[Optional[str], typer.Option(help="Expected head hash (stack output audit_head).")] = None,  # noqa: UP007
    length: Annotated[Optional[int], typer.Option(help="Expected length (stack output audit_length).")] = None,  # noqa: UP007
) -> None:
    """Exit 0 when the chain is intact; 1 with the first bad line and what is wrong; 2 when there is no log."""
    _require_log(log)
    verdict = audit.verify(str(log), expected_head=head, expected_length=length, allow_longer=True)
    if verdict.ok:
        # Parse the log a second time (seconds on a million entries) only when it can hold a correction, an
        # adoption or a seal; a torn or adopted line holding those bytes is no entry, so the parse counts.
        raw = log.read_bytes()
        maybe = any(mark in raw for mark in (b" | correct | ", b" | adopt | ", b" | seal | "))
        chained = audit.entries(str(log)) if maybe else []
        fixes = sum(1 for e in chained if e.action == "correct")
        seals = sum(1 for e in chained if e.action == "seal")
        counted = view.describe(verdict.length, len(chained) if maybe else verdict.length, seals)
        noted = f" ({fixes} correction{'s' if fixes != 1 else ''})" if fixes else ""
        say(f"ok: {log}: {counted}{noted}, head {verdict.head}")
        raise typer.Exit(0)
    say(f"BROKEN: {log}: line {verdict.first_bad_line}: {verdict.problem}: {verdict.detail}")
    raise typer.Exit(1)


@audit_app.command("append")
def audit_append(
    log: LogOpt,
    action: Annotated[str, typer.Option(help="deploy | rollback")],
    outcome: Annotated[str, typer.Option(help="success | failure")],
    from_image: Annotated[str, typer.Option("--from", help="Image rolled back from.")],
    to_image: Annotated[str, typer.Option("--to", help="Image rolled back to.")],
    reason: Annotated[str, typer.Option(help="Why.")],
    stack: StackOpt,
    actor: ActorOpt = "",
) -> None:
    """Append one entry by hand, for an emergency rollback done outside Pulumi (the procedure requires it).
    Refused (exit 2, nothing written) unless the log exists, the tags are sha-<hex> or none, the stack is the
    log's own and the reason says something."""
    _require_log(log)
    fields = {"--from": from_image, "--to": to_image, "--reason": reason, "--stack": stack, "--actor": actor}
    try:
        found = manual.problems(fields, {e.stack for e in audit.entries(str(log))})
    except audit.AuditError as exc:
        fail(str(exc), 2)
    if found:
        fail("; ".join(found) + "; nothing was written", 2)
    ship = _shipping(stack, log)
    _write(
        lambda: shipping.append(
            str(log),
            ship,
            action=action,
            outcome=outcome,
            from_image=from_image,
            to_image=to_image,
            actor=actor or current_actor(),
            reason=reason,
            stack=stack,
        )
    )


@audit_app.command("correct")
def audit_correct(
    log: LogOpt,
    stack: StackOpt,
    index: Annotated[int, typer.Option(help="The entry to correct: its position in the chain, 1 = the first.")],
    reason: Annotated[str, typer.Option(help="What was wrong and what is right (required).")],
    actor: ActorOpt = "",
) -> None:
    """Correct a wrong entry the only way an append-only log allows: a `correct` entry that names it (by
    position and hash) and says why. The named entry stays, is no longer counted as a move, and the
    correction shows in verify, tail and history."""
    _require_log(log)
    try:
        chained = audit.entries(str(log))
    except audit.AuditError as exc:
        fail(str(exc), 2)
    if not 1 <= index <= len(chained):
        fail(f"--index: expected 1 to {len(chained)} (the entries of {log}), saw {index}; nothing was written", 2)
    target = chained[index - 1]
    # The manual-entry checks for what a correction carries (no tags: it moves nothing).
    fields = {"--reason": reason, "--actor": actor, "--stack": stack, "--from": "none", "--to": "sha-0000000"}
    found = [p for p in manual.problems(fields, {e.stack for e in chained}) if not p.startswith(("--from", "--to"))]
    if target.action in manual.NOT_CORRECTABLE:
        found.append(f"--index: entry {index} is a {target.action} entry, which records no move to correct")
    if found:
        fail("; ".join(found) + "; nothing was written", 2)
    ship = _shipping(stack, log)
    _write(
        lambda: shipping.append(
            str(log),
            ship,
            action="correct",
            outcome="success",
            from_image="-",
            to_image="-",
            actor=actor or current_actor(),
            reason=manual.correction_reason(index, target.hash, reason),
            stack=stack,
        )  # fmt: skip
    )


@audit_app.command("tail")
def audit_tail(log: LogOpt, n: Annotated[int, typer.Option("-n", help="How many lines.")] = 10) -> None:
    """Print the last N lines as verify counts them: entries, and the adopted plain lines and sealed torn
    lines, marked as such (exit 2 when there is no log)."""
    _require_log(log)
    for line in view.tail_lines(log, n):
        say(line)


@audit_app.command("adopt")
def audit_adopt(log: LogOpt, stack: StackOpt, actor: ActorOpt = "") -> None:
    """Chain an existing plain log: its bytes are hashed into a first chained entry."""
    _write(lambda: (audit.adopt(str(log), actor=actor or current_actor(), stack=stack), ""))


@audit_app.command("seal")
def audit_seal(
    log: LogOpt,
    stack: StackOpt,
    actor: ActorOpt = "",
) -> None:
    """After a crash left a torn last line: keep its bytes as a line of their own, pinned by a seal entry that
    continues the chain, so appends work again. Exit 2, nothing written, if that is not the log's only problem.
    On a stack with a sink, a line the sink holds whole is completed from it instead: sealing it would fork."""
    ship = _shipping(stack, log) if log.is_file() else None
    if ship is not None:
        try:
            if shipping.complete_torn(str(log), ship.sink):
                say(f"completed the torn last line of {log} from the audit sink; nothing to seal")
                raise typer.Exit(0)
        except audit.AuditError as exc:
            fail(f"{exc}; nothing was sealed", 2)
    _write(lambda: (audit.seal(str(log), actor=actor or current_actor(), stack=stack), ""))
