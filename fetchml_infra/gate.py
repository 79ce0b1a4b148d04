"""The two dynamic resources of a deploy: HealthGate (is the new image healthy?) and AuditEntry (record it).

Both providers are thin: they hold no state of their own (dill pickles them by reference into the Pulumi
state, and they run again in a separate provider process), take only plain values as inputs, and hand the
work to fetchml_infra.health, fetchml_infra.audit and fetchml_infra.history.

Order in a deploy: containers are replaced -> HealthGate polls -> AuditEntry appends ``success``. A gate that
fails appends the ``failure`` entry itself, because the engine stops before AuditEntry runs.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from fetchml_infra import audit, health, history, host, notify, outcome, swarm_gate
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.audit.shipping import Shipping
from fetchml_infra.audit.target import DEFAULT_RETENTION_DAYS
from fetchml_infra.provider_errors import Refused, reported
from fetchml_infra.recording import record_move

# Set by the CLI for its engine runs: it sends the notify hook itself, with the whole post-rollback checklist.
CLI_NOTIFIES = "FETCHML_CLI_NOTIFIES"
# Inputs whose change makes AuditEntry append: a change of the deployed image, never actor or reason alone.
AUDIT_TRIGGERS = ("image",)


def current_actor(env: dict[str, str] | None = None) -> str:
    """Who is deploying: $FETCHML_ACTOR, else the OS user."""
    env = dict(os.environ) if env is None else env
    actor = env.get("FETCHML_ACTOR") or env.get("USER") or ""
    if not actor:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):
            actor = "unknown"
    return actor


def props_shipping(props: dict[str, Any]) -> Shipping | None:
    """The shipping a provider's inputs name (``audit_sink``, ``audit_retention_days``)."""
    days = int(props.get("audit_retention_days") or DEFAULT_RETENTION_DAYS)
    return shipping_.connect(props.get("audit_sink") or "", days, props["stack"])


def _record(
    props: dict[str, Any], outcome: str, reason: str, notes: list[str], shipping: Shipping | None
) -> audit.Entry | None:
    return record_move(
        props["audit_log"],
        stack=props["stack"],
        image=props["image"],
        actor=props["actor"],
        outcome=outcome,
        reason=reason,
        shipping=shipping,
        notes=notes,
    )


def _address(props: dict[str, Any]) -> str | Callable[[], str]:
    """The URL the gate polls: ``url`` with the guarded container's current address, looked up before each
    attempt, since a container that restarts with the Docker engine may come back on another address."""
    name = props.get("container")
    if not name:
        return str(props["url"])

    def now() -> str:
        address = host.container_address(str(name))
        return re.sub(r"//[^/:]+", f"//{address}", props["url"], count=1) if address else str(props["url"])

    return now


def _unproven(props: dict[str, Any]) -> bool:
    """The chain's last move on the stack is not a passed move to ``props['image']`` (a failed gate, an
    interrupted update, a move recorded by hand)."""
    last = history.last_entry(audit.entries(props["audit_log"]), props["stack"])
    return last is None or last.outcome != "success" or last.to_image != props["image"]


class HealthGateProvider(ResourceProvider):
    """Polls the health URL; passes, or fails the update with what it saw and the rollback command."""

    def _check(self, props: dict[str, Any], moved: bool) -> dict[str, Any]:
        """``moved``: the containers it guards are new. Only then does a failure record a (failed) move."""
        required = props["compliance_mode"] if props["compliance_mode"] != "none" else None
        if props.get("swarm"):
            try:
                result = swarm_gate.check(props["swarm"], props["image"], required, float(props["timeout"]))
            except swarm_gate.ClusterFault as exc:  # nothing recorded: the cluster, not the image, failed
                raise Refused(
                    f"health gate could not check stack '{props['stack']}' ({outcome.NOT_A_VERDICT}): {exc}\n"
                    "  no audit entry was written; fix the cluster and run the same command again"
                ) from None
        else:
            result = health.poll(
                _address(props),
                expected_version=props["image"],
                required_compliance=required,
                timeout=float(props["timeout"]),
            )
        if not result.verdict.healthy:
            reason = audit.clean_value(f"health-check-failure: {result.verdict.reason}")[:200]
            notes: list[str] = []
            entry = _record(props, "failure", reason, notes, props_shipping(props)) if moved else None
            recorded = (
                f"the failure is recorded in the audit log {props['audit_log']}" + "".join(f"; {n}" for n in notes)
                if entry
                else "no audit entry was written: the running containers did not change"
            )
            raise Refused(
                health.describe_failure(
                    result, url=props["url"], stack=props["stack"], rollback_advice=props["rollback_advice"]
                )
                + f"\n  {recorded}"
            )
        v = result.verdict
        return {
            **props,
            "healthy": True,
            "version": v.version or "",
            "reported_compliance_mode": v.compliance_mode or "",
            "elapsed": round(result.elapsed, 3),
        }

    @reported(audit.AuditError, OSError)
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"gate-{props['stack']}", self._check(props, moved=True))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Re-check whenever anything it guards changed (a replaced container has a new id), and whenever the
        # chain does not say this image passed here last (a retry of a failed image must be checked again).
        keys = ("url", "image", "compliance_mode", "targets")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed) or _unproven(news), replaces=[], delete_before_replace=False)

    @reported(audit.AuditError, OSError)
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        moved = olds.get("targets") != news.get("targets") or olds.get("image") != news.get("image")
        return UpdateResult(self._check(news, moved))


class HealthGate(pulumi.dynamic.Resource, module="fetchml", name="HealthGate"):
    healthy: pulumi.Output[bool]
    version: pulumi.Output[str]
    reported_compliance_mode: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        url: pulumi.Input[str],
        image: str,
        compliance_mode: str,
        timeout: float,
        stack: str,
        audit_log: str,
        audit_sink: tuple[str, int] = ("", 0),
        actor: str,
        rollback_advice: str,
        targets: pulumi.Input[list[str]],
        container: str | None = None,
        swarm: pulumi.Input[dict[str, Any]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "url": url,
            "container": container,
            "swarm": swarm,
            "image": image,
            "compliance_mode": compliance_mode,
            "timeout": timeout,
            "stack": stack,
            "audit_log": audit_log,
            "audit_sink": audit_sink[0],
            "audit_retention_days": audit_sink[1],
            "actor": actor,
            "rollback_advice": rollback_advice,
            "targets": targets,
            "healthy": None,
            "version": None,
            "reported_compliance_mode": None,
        }
        super().__init__(HealthGateProvider(), name, props, opts)


class AuditEntryProvider(ResourceProvider):
    """Appends one entry per change of the deployed image, after verifying the chain it extends.

    Delete is a no-op: the chain is never rolled back, whatever happens to the stack.
    """

    def _append(self, props: dict[str, Any], olds: dict[str, Any] | None) -> dict[str, Any]:
        log = props["audit_log"]
        expected = (olds["head"], int(olds["length"])) if olds and olds.get("head") else (None, None)
        shipping = props_shipping(props)
        shipping_.catch_up(log, shipping)  # the recorded head may be another operator's entry
        audit.require_intact(log, *expected, consequence="Nothing was recorded.")
        notes: list[str] = []
        entry = _record(props, "success", props["reason"] or "-", notes, shipping)
        head, length = audit.head(log)
        if entry is None:  # the chain already ends at this image: nothing moved, nothing to record
            kept = olds or {}
            return {
                **props,
                "entry": kept.get("entry") or "",
                "action": kept.get("action") or "none",
                "head": head,
                "length": length,
                "shipping": "",
                "notified": "",
            }
        notified = ""
        if entry.action == "rollback" and props.get("notify_webhook") and not os.environ.get(CLI_NOTIFIES):
            checklist = [("health gate", True, "passed"), ("audit chain", True, audit.count_entries(length))]
            notified = notify.send(props["notify_webhook"], notify.payload(props["stack"], entry, checklist))[1]
        return {
            **props,
            "entry": entry.render(),
            "action": entry.action,
            "head": head,
            "length": length,
            "shipping": "; ".join(notes),
            "notified": notified,
        }

    @reported(audit.AuditError, OSError)
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"audit-{props['stack']}", self._append(props, None))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Append when the image differs from the one this resource recorded, or from the one the chain last
        # recorded as passing (after a failed gate, the rollback to the old image is a change too).
        changed = [k for k in AUDIT_TRIGGERS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed) or _unproven(news), replaces=[], delete_before_replace=False)

    @reported(audit.AuditError, OSError)
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._append(news, olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class AuditEntry(pulumi.dynamic.Resource, module="fetchml", name="AuditEntry"):
    head: pulumi.Output[str]
    length: pulumi.Output[int]
    action: pulumi.Output[str]
    entry: pulumi.Output[str]
    shipping: pulumi.Output[str]  # why the entry was not shipped to the sink, when it was not
    notified: pulumi.Output[str]  # what the notify hook answered (plain `pulumi up` rollbacks)

    def __init__(
        self,
        name: str,
        *,
        image: str,
        stack: str,
        audit_log: str,
        audit_sink: tuple[str, int] = ("", 0),
        notify_webhook: str = "",
        actor: str,
        reason: str,
        gate: pulumi.Input[bool],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "image": image,
            "stack": stack,
            "audit_log": audit_log,
            "audit_sink": audit_sink[0],
            "audit_retention_days": audit_sink[1],
            "notify_webhook": pulumi.Output.secret(notify_webhook) if notify_webhook else "",
            "actor": actor,
            "reason": reason,
            "gate": gate,
            "head": None,
            "length": None,
            "action": None,
            "entry": None,
            "shipping": None,
            "notified": None,
        }
        super().__init__(AuditEntryProvider(), name, props, opts)
