"""Before a deploy, rollback or recovery changes anything: every reason to refuse, each with what was seen
and the command to run. A refusal is exit 2 (exit 1 for an audit chain that does not verify): no config
written, no container touched, no entry appended.

Order: cheapest and most fundamental first. The engine answers; no other update holds the stack and none
was left half-done; the images are there; the audit chain verifies, reaches the recorded head and can be
appended to; the names and ports the stack needs are free or its own; and the running containers are the
ones the chain last recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from fetchml_infra import audit, guard, history, host, lock, offline, ops_store, passphrase, ports, schema
from fetchml_infra.audit import checkpoint, sink_checks
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.audit.checkpoint import parse_signers
from fetchml_infra.audit.target import SinkError
from fetchml_infra.config import StackConfig
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import OperatorError, Stack, image_present, pull

EXIT_CHECKS_FAILED = 1
Say = Callable[[str], None]


def recover_hint(stack: str) -> str:
    return f"Nothing was changed. Run: fetchml-infra recover --stack {stack}"


def recorded_head(outputs: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The chain head and length the last update recorded in the stack outputs (none before the first)."""
    length = outputs.get("audit_length")
    return outputs.get("audit_head"), int(length) if length is not None else None


def engine_locks(stack: Stack) -> list[lock.EngineLock]:
    """The engine's locks on the stack, in a file backend or an S3 one (a team's shared state)."""
    backend = offline.backend_dir(os.environ)
    if backend is not None:
        return lock.engine_locks(backend, stack.name)
    try:
        return ops_store.engine_locks(os.environ.get("PULUMI_BACKEND_URL", ""), stack.name)
    except SinkError as exc:
        raise OperatorError(f"{exc}. Nothing was changed.") from exc


def require_unlocked(stack: Stack) -> None:
    """Another `pulumi up` (the plain path, or a second machine) holds the stack, or a killed one left its
    lock behind."""
    for held in engine_locks(stack):
        if lock.holder_gone(held):
            raise OperatorError(
                f"stack '{stack.name}' is locked by {held.describe()}, which is gone: an update was killed "
                f"before it finished. {recover_hint(stack.name)}"
            )
        raise OperatorError(
            f"stack '{stack.name}' is being updated by {held.describe()}; nothing was changed and nothing "
            f"recorded. Run again when it has finished."
        )


def check_engine() -> None:
    problem = host.engine_problem()
    if problem:
        raise OperatorError(f"{problem}. Nothing was changed.")


def check_images(cfg: StackConfig, say: Say) -> None:
    for image in (cfg.api_image, cfg.worker_image):
        if image_present(image):
            say(f"  ok  image {image} is present locally")
            continue
        pulled, detail = pull(image)
        if not pulled:
            raise OperatorError(
                f"image {image} is neither present locally nor pullable: {detail}\n"
                f"Nothing was changed. Build or load it (`docker load`), then run again."
            )
        say(f"  ok  image {image} pulled")


def check_audit(log: str, outputs: Mapping[str, Any], say: Say) -> None:
    head, length = recorded_head(outputs)
    try:
        verdict = audit.require_intact(log, head, length)
    except audit.AuditError as exc:
        raise OperatorError(str(exc), code=EXIT_CHECKS_FAILED) from exc
    try:
        audit.require_appendable(log)
    except audit.AuditError as exc:
        raise OperatorError(str(exc)) from exc
    extends = ", extends the recorded head" if head else ""
    say(f"  ok  audit chain intact ({audit.count_entries(verdict.length)}{extends})")
    say("  ok  audit log can be appended to")


def check_sink(cfg: StackConfig, log: str, say: Say) -> None:
    """The fast form of check-sink: the log and the sink in step (another operator's entries taken in, unshipped
    ones sent). A fork refuses; an unreachable sink refuses on a HIPAA stack and is a warning elsewhere."""
    if not cfg.audit_sink:
        if cfg.compliance_mode == "hipaa":
            say("  warning: complianceMode hipaa without an auditSink: the audit chain lives on this host only")
        return
    try:
        shipping = shipping_of(cfg)
        assert shipping is not None
        lines = sink_checks.before_change(
            log, shipping, parse_signers(cfg.audit_signers), hipaa=cfg.compliance_mode == "hipaa"
        )
    except shipping_.Diverged as exc:
        raise OperatorError(f"{exc}\nNothing was changed.", code=EXIT_CHECKS_FAILED) from exc
    except (audit.AuditError, checkpoint.CheckpointError) as exc:
        raise OperatorError(str(exc)) from exc
    for line in lines:
        say(f"  {line}")


def orphans(cfg: StackConfig, deployment: Mapping[str, Any]) -> list[host.AppContainer]:
    """App containers an interrupted update left behind, unknown to the state (see host.orphans)."""
    if cfg.target == "swarm":  # a task belongs to its service, which the state holds: never an orphan
        return []
    managed = host.managed(deployment)["container"]
    return host.orphans(host.app_containers(cfg.name_prefix), managed)


def check_orphans(cfg: StackConfig, deployment: Mapping[str, Any]) -> None:
    found = orphans(cfg, deployment)
    if found:
        names = ", ".join(f"{c.name} ({c.id[:12]}, {c.image})" for c in found)
        raise OperatorError(
            f"container(s) {names} were created for stack '{cfg.stack}' by an update that did not finish, and "
            f"the state does not know them. {recover_hint(cfg.stack)}"
        )


def check_host(cfg: StackConfig, deployment: Mapping[str, Any], say: Say) -> None:
    needs = host.needs(cfg)
    managed = host.managed(deployment)
    found = host.existing(needs)
    # A data volume kept by an earlier destroy (retain_on_delete) is meant to be taken up again: say so only.
    for name in sorted(set(found.get("volume", {})) - managed["volume"]):
        say(f"  note: volume {name} exists from before; the stack takes it up with its data")
    problems = host.name_conflicts(needs, managed, {k: v for k, v in found.items() if k != "volume"})
    if cfg.target == "docker":  # a swarm binds its ports on the data node, not on this host
        problems += ports.port_conflicts(needs, managed["container"])
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise OperatorError(
            f"stack '{cfg.stack}' cannot take what it needs on this host:\n{listed}\nNothing was changed."
        )
    say("  ok  container, network and volume names and host ports are free or the stack's own")


def check_recorded(cfg: StackConfig, log: str) -> None:
    """The app containers run what the chain last recorded; otherwise a move went unrecorded."""
    entries = audit.entries(log)
    last = history.last_entry(entries, cfg.stack)
    if last is None:
        return
    apps = host.app_containers(cfg.name_prefix)
    strays = host.images_other_than(apps, *history.accounted_for(entries, cfg.stack))
    if strays:
        raise OperatorError(
            f"the app containers of stack '{cfg.stack}' run {', '.join(strays)} "
            f"({host.describe(apps, cfg.worker_replicas, last.to_image)}) but the audit chain's last move is to "
            f"{last.to_image}: a move went unrecorded (an interrupted update?). {recover_hint(cfg.stack)}"
        )


def check_schema(cfg: StackConfig, log: str, force: bool, say: Say) -> None:
    """The target runs on the live database schema (fetchml_infra.schema); the program checks again."""
    if guard.running_image(cfg, log) == cfg.image:
        return
    try:
        checked, pending = schema.check(cfg.name_prefix, cfg.api_image, cfg.image)
    except schema.SchemaError as exc:
        if not force:
            raise OperatorError(f"{exc}. Nothing was changed; or add --force-schema") from exc
        say(f"  warning: {exc}; the schema is not checked (--force-schema)")
        return
    if not checked.ok and not force:
        raise OperatorError(f"{cfg.image} cannot run on this stack's database: {checked.line}. Nothing was changed.")
    if not checked.ok:
        say(f"  warning: {checked.line.split(': a rollback', 1)[0]}; going anyway (--force-schema, recorded)")
        return
    todo = f"; {pending} migration(s) to apply on start" if pending else ""
    say(f"  ok  schema: {checked.line}{todo}")


def check_pending(stack: Stack, deployment: Mapping[str, Any]) -> None:
    pending = deployment.get("pending_operations") or []
    if pending:
        raise OperatorError(
            f"stack '{stack.name}' has {len(pending)} pending operation(s) left by an update that did not "
            f"finish. {recover_hint(stack.name)}"
        )


def preflight(stack: Stack, cfg: StackConfig, say: Say, force_schema: bool = False) -> None:
    """Everything that must hold before a CLI update starts; raises OperatorError (nothing changed)."""
    if stack.dev_passphrase():  # allowed here (parse refuses it on prod and HIPAA stacks): say so
        say(passphrase.note(stack.name))
    check_engine()
    require_unlocked(stack)
    deployment = stack.deployment()
    check_pending(stack, deployment)
    check_orphans(cfg, deployment)
    check_images(cfg, say)
    log = stack.audit_log(cfg)
    check_sink(cfg, log, say)
    check_audit(log, stack.outputs(), say)
    check_host(cfg, deployment, say)
    check_recorded(cfg, log)
    check_schema(cfg, log, force_schema, say)
