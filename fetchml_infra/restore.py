"""`fetchml-infra restore`: data recovery, which a rollback never is.

A rollback moves images and leaves the data alone; when the data itself is wrong (a deleted key, a dropped
table), the fix is to put a snapshot's data back. In order, each step refusing early:

  check (engine, no update running, chain intact and appendable, sink in step) -> read and verify the
  snapshot's parts -> a safety snapshot of the data as it is now -> stop the app (API and workers) ->
  restore the chosen parts (--redis, --db) -> start the app at its current image -> health gate ->
  one `restore` entry in the chain (no image moves: from and to are the running image).

Pure decisions (what is asked, the entry's reason) are functions here; the edges are
fetchml_infra.snapshot_store and fetchml_infra.data_restore.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fetchml_infra import audit, data_restore, health, host, preflight, snapshot_store
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import current_actor
from fetchml_infra.recording import shipping_of
from fetchml_infra.snapshots import Manifest
from fetchml_infra.workspace import OperatorError, Stack

Say = Callable[[str], None]
EXIT_OK, EXIT_FAILED = 0, 4


@dataclass(frozen=True)
class Ask:
    snapshot: str
    reason: str
    redis: bool
    db: bool
    incident: str  # an incident reference (ticket id); required on prod and HIPAA stacks
    confirmed: bool  # --yes, or the operator typed the stack name

    @property
    def parts(self) -> list[str]:
        return [p for p, on in (("redis", self.redis), ("db", self.db)) if on]


def refusal(cfg: StackConfig, ask: Ask) -> str | None:
    """Why the restore must not start, before anything is read."""
    if not ask.reason.strip():
        return "--reason: required (one readable line saying why the data is restored); saw an empty reason"
    if not ask.parts:
        return "--redis / --db: name at least one part to restore; saw neither"
    guarded = cfg.environment == "prod" or cfg.compliance_mode == "hipaa"
    if guarded and not ask.incident.strip():
        kind = f"{cfg.environment}/{cfg.compliance_mode}"
        return f"--incident: restoring data on {kind} stack '{cfg.stack}' needs an incident reference (a ticket id)"
    if guarded and not ask.confirmed:
        return f"--yes: restoring data on stack '{cfg.stack}' replaces live data; confirm with --yes"
    return None


def entry_reason(ask: Ask, manifest: Manifest, safety: Manifest | None, failed: str) -> str:
    parts = " and ".join(ask.parts)
    kept = f"; the data before it is snapshot {safety.id}" if safety else ""
    what = f"restore of {parts} from snapshot {manifest.id} (taken before entry #{manifest.before_entry}){kept}"
    incident = f"; incident {ask.incident}" if ask.incident else ""
    outcome = f"; FAILED: {failed}" if failed else ""
    return audit.clean_value(f"{what}: {ask.reason}{incident}{outcome}")[:480]


def _check(stack: Stack, cfg: StackConfig, say: Say) -> str:
    preflight.check_engine()
    preflight.require_unlocked(stack)
    log = stack.audit_log(cfg)
    preflight.check_sink(cfg, log, say)
    preflight.check_audit(log, stack.outputs(), say)
    return log


def restore(stack: Stack, cfg: StackConfig, ask: Ask, say: Say) -> int:
    why = refusal(cfg, ask)
    if why:
        raise OperatorError(f"{why}; nothing was changed")
    log = _check(stack, cfg, say)
    apps = [c for c in host.app_containers(cfg.name_prefix).values() if c.image == cfg.image]
    if not apps:
        raise OperatorError(f"stack '{cfg.stack}' runs no app at {cfg.image} to restore under; nothing was changed")
    try:
        manifest = snapshot_store.load(cfg, ask.snapshot)
        data = {part: snapshot_store.read_part(cfg, manifest, part) for part in ask.parts}
        sizes = ", ".join(f"{p} {len(b)} bytes" for p, b in data.items())
        say(f"  ok  snapshot {manifest.id}: {sizes}, sha256 verified")
        safety = snapshot_store.take(cfg, log, image=cfg.image, target=cfg.image, action="restore")
    except snapshot_store.SnapshotError as exc:
        raise OperatorError(f"{exc}; nothing was changed") from exc
    if safety is not None:
        say(f"  ok  the data as it is now is snapshot {safety.id}")
    say(f"stopping the app ({', '.join(c.name for c in apps)}) to restore {' and '.join(ask.parts)}")
    failed = ""
    try:
        host.run_docker("stop", "-t", str(cfg.worker_stop_grace_seconds), *(c.name for c in apps), timeout=600)
        if "redis" in data:
            data_restore.redis(cfg, data["redis"])
            say("  ok  Redis restored (full sync from the snapshot, append-only file rewritten)")
        if "db" in data:
            data_restore.database(cfg, data["db"])
            say("  ok  database restored (into a new database, swapped in)")
    except (data_restore.RestoreError, host.HostError) as exc:
        failed = str(exc)
        say(f"restore failed: {failed}")
    finally:
        host.run_docker("start", *(c.name for c in apps), timeout=120)
    polled = health.poll(
        cfg.health_url,
        expected_version=cfg.image,
        required_compliance=cfg.required_compliance,
        timeout=cfg.health_timeout_seconds,
    )
    if not polled.verdict.healthy and not failed:
        failed = f"the app is not healthy after the restore: {polled.verdict.reason}"
    say(f"  {'ok ' if polled.verdict.healthy else 'FAILED'}  health {cfg.health_url}: {polled.verdict.reason}")
    try:
        entry, note = shipping_.append(
            log,
            shipping_of(cfg),
            action="restore",
            outcome="failure" if failed else "success",
            from_image=cfg.image,
            to_image=cfg.image,
            actor=current_actor(),
            reason=entry_reason(ask, manifest, safety, failed),
            stack=cfg.stack,
        )
    except (audit.AuditError, ValueError, OSError) as exc:
        say(f"the restore {'failed' if failed else 'finished'}, but its audit entry could not be written: {exc}")
        return EXIT_FAILED
    say(entry.render())
    if note:
        say(f"warning: the restore entry was {note}")
    return EXIT_FAILED if failed else EXIT_OK
