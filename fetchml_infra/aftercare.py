"""What a rollback carries besides the move: the incident report (before it, required on HIPAA stacks) and the
notify hook (after it, never fatal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fetchml_infra import audit, history, incident, notify
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.config import StackConfig
from fetchml_infra.workspace import OperatorError

Say = Callable[[str], None]


def require_incident(cfg: StackConfig, path: Path | None) -> incident.Report | None:
    """The report given with --incident; on a HIPAA stack a refusal with the template when there is none."""
    hipaa = cfg.compliance_mode == "hipaa"
    if path is None:
        if hipaa:
            raise OperatorError(
                f"--incident: a rollback of HIPAA stack '{cfg.stack}' needs an incident report; nothing was "
                f"changed. Save this template, fill it in, and pass it with --incident FILE:\n\n"
                + incident.template(cfg.stack)
            )
        return None
    try:
        return incident.read(path, hipaa=hipaa)
    except ValueError as exc:
        raise OperatorError(str(exc)) from exc


def pinned_reason(reason: str, report: incident.Report | None, limit: int) -> str:
    """The entry's reason with the report's hash at its end, the operator's words cut to fit beside it."""
    if report is None:
        return reason
    return f"{reason[: limit - len(report.pin()) - 1]} {report.pin()}"


def file_incident(cfg: StackConfig, log: str, report: incident.Report, say: Say) -> None:
    """Keep the report beside the log and in the sink, before the rollback changes anything. A sink that cannot
    take it refuses on a HIPAA stack (the report is part of the record) and is a warning elsewhere."""
    kept = incident.keep(report, Path(log).parent / "incidents" / cfg.stack)
    say(f"  ok  incident report {report.sha256[:12]} kept at {kept}")
    shipping = shipping_.connect(cfg.audit_sink, cfg.audit_retention_days, cfg.stack)
    if shipping is None:
        return
    try:
        shipping.sink.put_incident(report.sha256, report.text)
    except shipping_.SinkError as exc:
        if cfg.compliance_mode == "hipaa":
            raise OperatorError(
                f"{exc}\nThe incident report could not be stored in the sink; nothing was changed."
            ) from exc
        say(f"  warning: {exc}; the incident report is kept locally only")
        return
    say(f"  ok  incident report stored write-once in {shipping.sink.target.url()}")


def notify_rollback(cfg: StackConfig, log: str, checks: Sequence[tuple[str, bool, str]], say: Say) -> None:
    """POST the rollback's entry, checklist and incident hash to notifyWebhook, if set; report the result."""
    if not cfg.notify_webhook:
        return
    last = history.last_entry(audit.entries(log), cfg.stack)
    entry = last if last is not None and last.action == "rollback" else None
    _, line = notify.send(cfg.notify_webhook, notify.payload(cfg.stack, entry, checks))
    say(f"  {line}")
