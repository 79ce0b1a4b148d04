"""What the program does before it registers any resource of a move to a new image, on the CLI path and the
plain `pulumi up` path alike: the schema check (fetchml_infra.schema), then, on an update, the data snapshot
(fetchml_infra.snapshots). Preview runs the check too, so the refusal shows in the preview and the PR comment.

Nothing here runs when the image does not change (the chain's last move is already to it): a re-run of the
same release takes no snapshot, and a stack that was once forced onto a newer schema is not refused forever.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fetchml_infra import audit, history, schema, snapshot_store
from fetchml_infra.config import StackConfig
from fetchml_infra.provider_errors import Refused


def running_image(cfg: StackConfig, log: str) -> str | None:
    """The image the chain last moved the stack to (None before its first move)."""
    last = history.last_entry(audit.entries(log), cfg.stack)
    return last.to_image if last is not None and last.to_image != history.NO_IMAGE else None


def _refuse(message: str) -> Refused:
    sys.tracebacklimit = 0  # the program's process ends here: the words, not our source files
    return Refused(f"{message}\nNothing was changed.")


def schema_note(cfg: StackConfig, say: Callable[[str], None], dry_run: bool = False) -> str:
    """Check the move's target against the live schema; the override note for the audit entry ("" when none).
    Raises Refused when the schema refuses it, or cannot be read, and forceSchema is not set. A preview does
    not pull: an image that is not here yet is reported, not refused (the update pulls it and checks)."""
    try:
        checked, pending = schema.check(cfg.name_prefix, cfg.api_image, cfg.image, pull=not dry_run)
    except schema.SchemaError as exc:
        if dry_run and "labels" in str(exc):
            say(f"schema check: {exc}; checked when the update runs")
            return ""
        if not cfg.force_schema:
            raise _refuse(f"schema check: {exc}; or pass --force-schema") from None
        say(f"schema check: {exc}; not checked (forceSchema)")
        return audit.clean_value(f"schema check skipped (--force-schema): {exc}")[:300]
    if checked.ok:
        say(f"schema: {checked.line}" + (f"; {pending} migration(s) to apply on start" if pending else ""))
        return ""
    if not cfg.force_schema:
        raise _refuse(f"schema check: {checked.line}")
    say(f"schema check overridden (forceSchema): {checked.line}")
    return schema.override_note(checked)


def before_move(cfg: StackConfig, log: str, dry_run: bool, say: Callable[[str], None]) -> str:
    """The schema check, then (not on preview) the snapshot; the override note for the audit entry."""
    current = running_image(cfg, log)
    if current == cfg.image:
        return ""
    note = schema_note(cfg, say, dry_run)
    if dry_run:
        return note
    action = "rollback" if history.last_passed_to(audit.entries(log), cfg.stack, cfg.image) else "deploy"
    try:
        taken = snapshot_store.take(cfg, log, image=current or history.NO_IMAGE, target=cfg.image, action=action)
    except snapshot_store.SnapshotError as exc:
        if action == "deploy":  # a new release may migrate the data: not without a way back
            raise _refuse(f"{exc}; a deploy snapshots the data first, so it did not start") from None
        say(f"warning: {exc}; the rollback goes on without one (it changes images only, never data)")
        return note
    if taken is not None:
        sizes = ", ".join(f"{name} {part.bytes} bytes" for name, part in sorted(taken.parts.items()))
        say(f"snapshot {taken.id} taken before entry #{taken.before_entry} ({sizes})")
    return note


def with_note(reason: str, note: str) -> str:
    """The audit entry's reason, with the schema override appended when there was one."""
    return f"{reason}; {note}" if reason and note else reason or note
