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

from fetchml_infra import audit, data_restore, health, host, preflight, schema, snapshot_store
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
    if cfg.target == "swarm":  # it stops and starts the app's containers, which a swarm's services own
        return (
            f"restore: stack '{cfg.stack}' runs on a swarm, and restore stops the app's containers on one host only; "
            "nothing was changed (scale the app's services to 0 with `docker service scale`, restore, scale back)"
        )
    guarded = cfg.environment == "prod" or cfg.compliance_mode == "hipaa"
    if guarded and not ask.incident.strip():
        kind = f"{cfg.environment}/{cfg.compliance_mode}"
        return f"--incident: restoring data on {kind} stack '{cfg.stack}' needs an incident reference (a ticket id)"
    if guarded and not ask.confirmed:
        return f"--yes: restoring data on stack '{cfg.stack}' replaces live data; confirm with --yes"
    return None


def entry_reason(ask: Ask, manifest: Manifest, safety: Manifest | None, restored: list[str], failed: str) -> str:
    """One line: what came back from where, the operator's why (cut to fit, never the outcome), and failures."""
    done = " and ".join(restored) or "nothing"
    kept = f"; the data before it is snapshot {safety.id}" if safety else ""
    what = f"restore of {done} from snapshot {manifest.id} (taken before entry #{manifest.before_entry}){kept}"
    incident = f"; incident {ask.incident}" if ask.incident else ""
    outcome = f"; FAILED: {failed}" if failed else ""
    room = max(480 - len(what) - len(incident) - len(outcome[:300]) - 2, 40)
    return audit.clean_value(f"{what}: {ask.reason[:room]}{incident}{outcome[:300]}")


def _check(stack: Stack, cfg: StackConfig, say: Say) -> str:
    preflight.check_engine()
    preflight.require_unlocked(stack)
    log = stack.audit_log(cfg)
    preflight.check_sink(cfg, log, say)
    preflight.check_audit(log, stack.outputs(), say)
    return log


def _running_apps(cfg: StackConfig) -> list[host.AppContainer]:
    """The app containers that run now; all on the config's image, or the stack is mid-change: refused."""
    apps = [c for c in host.app_containers(cfg.name_prefix).values() if c.running]
    others = sorted({c.image for c in apps} - {cfg.image})
    if others:
        raise OperatorError(
            f"stack '{cfg.stack}' runs {', '.join(others)} beside or instead of its config's {cfg.image} (a failed or "
            f"interrupted update?); bring it to one image first (rollback or recover); nothing was changed"
        )
    if not apps:
        raise OperatorError(f"stack '{cfg.stack}' runs no app at {cfg.image} to restore under; nothing was changed")
    return apps


def _read(cfg: StackConfig, ask: Ask, say: Say) -> tuple[Manifest, dict[str, bytes]]:
    """The snapshot's chosen parts, verified; refused when its database would not fit the running image."""
    try:
        manifest = snapshot_store.load(cfg, ask.snapshot)
        data = {part: snapshot_store.read_part(cfg, manifest, part) for part in ask.parts}
        declared = schema.declared(cfg.api_image)
    except (snapshot_store.SnapshotError, schema.SchemaError) as exc:
        raise OperatorError(f"{exc}; nothing was changed") from exc
    if "db" in data and manifest.schema is not None:
        checked = schema.fit(manifest.schema, cfg.image, declared)
        if not checked.ok:
            raise OperatorError(
                f"the snapshot's database does not fit {cfg.image}: {checked.line}; nothing was changed"
            )
    sizes = ", ".join(f"{p} {len(b)} bytes" for p, b in data.items())
    say(f"  ok  snapshot {manifest.id}: {sizes}, sha256 verified")
    return manifest, data


def _put_back(cfg: StackConfig, data: dict[str, bytes], say: Say) -> tuple[list[str], str]:
    """Restore the parts in order; (the parts restored, what failed)."""
    restored: list[str] = []
    try:
        if "redis" in data:
            data_restore.redis(cfg, data["redis"])
            restored.append("redis")
            say("  ok  Redis restored (full sync from the snapshot, append-only file rewritten)")
        if "db" in data:
            data_restore.database(cfg, data["db"], say)
            restored.append("db")
            say("  ok  database restored (into a new database, swapped in)")
    except (data_restore.RestoreError, host.HostError) as exc:
        say(f"restore failed: {exc}")
        return restored, str(exc)
    return restored, ""


def restore(stack: Stack, cfg: StackConfig, ask: Ask, say: Say) -> int:
    why = refusal(cfg, ask)
    if why:
        raise OperatorError(f"{why}; nothing was changed")
    log = _check(stack, cfg, say)
    apps = _running_apps(cfg)
    manifest, data = _read(cfg, ask, say)
    names = [c.name for c in apps]
    say(f"stopping the app ({', '.join(names)}) to restore {' and '.join(ask.parts)}")
    failed = ""
    try:
        host.run_docker("stop", "-t", str(cfg.worker_stop_grace_seconds), *names, timeout=600)
        # After the stop, so that nothing the app writes in between is lost with the data it replaces.
        safety = snapshot_store.take(cfg, log, image=cfg.image, target=cfg.image, action="restore")
    except (snapshot_store.SnapshotError, host.HostError) as exc:
        host.run_docker("start", *names, timeout=120)
        raise OperatorError(f"{exc}; the app was started again and nothing was changed") from exc
    if safety is not None:
        say(f"  ok  the data as it is now is snapshot {safety.id}")
    restored: list[str] = []
    try:
        restored, failed = _put_back(cfg, data, say)
    finally:
        try:
            host.run_docker("start", *names, timeout=120)
        except host.HostError as exc:
            failed = f"{failed}; the app did not start again: {exc}".lstrip("; ")
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
            reason=entry_reason(ask, manifest, safety, restored, failed),
            stack=cfg.stack,
        )
    except (audit.AuditError, ValueError, OSError) as exc:
        say(f"the restore {'failed' if failed else 'finished'}, but its audit entry could not be written: {exc}")
        return EXIT_FAILED
    say(entry.render())
    if note:
        say(f"warning: the restore entry was {note}")
    return EXIT_FAILED if failed else EXIT_OK
