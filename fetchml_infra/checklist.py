"""The post-rollback checklist: the procedure's after-actions that a machine can do. Health and compliance
mode, queue state, the audit chain (and its sink), and the database: it answers, its schema version, and
migrations the image has not applied yet."""

from __future__ import annotations

from dataclasses import dataclass

from fetchml_infra import audit, health, jobqueue, preflight, schema
from fetchml_infra.audit import sink_checks
from fetchml_infra.config import StackConfig
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import Stack


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def post_rollback(stack: Stack, cfg: StackConfig) -> list[Check]:
    """The procedure's post-rollback actions that a machine can do: health, queue state, audit chain, and the
    audit sink when the stack has one."""
    outputs = stack.outputs()
    required = cfg.required_compliance
    polled = health.poll(
        cfg.health_url,
        expected_version=cfg.image,
        required_compliance=required,
        timeout=min(cfg.health_timeout_seconds, 15),
    )
    v = polled.verdict
    checks = [Check("health", v.healthy, f"{cfg.health_url}: {v.reason}, version {v.version or 'not reported'}")]
    if required:
        checks.append(Check("compliance_mode", v.compliance_mode == required, f"reported {v.compliance_mode!r}"))
    try:
        counts = jobqueue.state(str(outputs.get("redis_address", f"127.0.0.1:{cfg.redis_host_port}")))
        fix = f": fetchml-infra queue requeue-stuck --stack {stack.name}" if counts["stuck"] else ""
        checks.append(Check("queue state", not counts["stuck"], jobqueue.describe(counts) + fix))
    except Exception as exc:  # a check that cannot run is reported, not hidden
        checks.append(Check("queue state", False, f"Redis did not answer: {exc}"))
    log = stack.audit_log(cfg)
    verdict = audit.verify(log, *preflight.recorded_head(outputs), allow_longer=True)
    detail = f"{audit.count_entries(verdict.length)}, head {verdict.head[:12]}" if verdict.ok else verdict.detail
    checks.append(Check("audit chain", verdict.ok, detail))
    shipping = shipping_of(cfg)
    if shipping is not None:
        checks.append(Check("audit sink", *sink_checks.in_step(log, shipping.sink)))
    return [*checks, *database_checks(cfg)]


def database_checks(cfg: StackConfig) -> list[Check]:
    """The database after a move: it answers, its schema version, and migrations the image has not applied."""
    try:
        live = schema.live_version(cfg.name_prefix)
        declared = schema.declared(cfg.api_image)
    except schema.SchemaError as exc:
        return [Check("database", False, str(exc))]
    if live is None:
        return [Check("database", False, f"no database container {schema.container(cfg.name_prefix)}")]
    runs_on = f"; {cfg.image} runs on {declared.min} to {declared.max}" if declared else ""
    todo = schema.pending(live, declared)
    return [
        Check("database", True, f"{schema.container(cfg.name_prefix)} answers"),
        Check("schema version", schema.fit(live, cfg.image, declared).ok, f"{live}{runs_on}"),
        Check("migrations pending", not todo, f"{todo} (the API applies them on start)" if todo else "none"),
    ]
