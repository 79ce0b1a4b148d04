"""How a move of a stack's image is recorded: one place, so that every entry goes through the stack's sink
when it has one (``audit.shipping``), and is decided from the chain under the log's lock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from fetchml_infra import audit, history
from fetchml_infra.audit import shipping as shipping_
from fetchml_infra.audit import sink_checks
from fetchml_infra.audit.checkpoint import parse_signers
from fetchml_infra.audit.line import Entry
from fetchml_infra.audit.shipping import Shipping

if TYPE_CHECKING:
    from fetchml_infra.config import StackConfig


def shipping_of(cfg: StackConfig) -> Shipping | None:
    """The shipping of a stack's entries: None when its config names no sink (``auditSink``)."""
    return shipping_.connect(cfg.audit_sink, cfg.audit_retention_days, cfg.stack)


def sink_ready(cfg: StackConfig, log: str, warn: Callable[[str], None]) -> None:
    """The plain `pulumi up` path's fast sink check (the CLI's preflight runs the same): a HIPAA stack whose
    sink cannot take the entry fails here (AuditError), before any resource is registered."""
    shipping = shipping_of(cfg)
    if shipping is not None:
        signers = parse_signers(cfg.audit_signers)
        for line in sink_checks.before_change(log, shipping, signers, hipaa=cfg.compliance_mode == "hipaa"):
            if line.startswith("warning"):
                warn(line.removeprefix("warning: "))


def record_move(
    log: str,
    *,
    stack: str,
    image: str,
    actor: str,
    outcome: str,
    reason: str,
    shipping: Shipping | None,
    action: str | None = None,
    notes: list[str] | None = None,
) -> audit.Entry | None:
    """Append the entry for moving ``stack`` to ``image``: deploy or rollback (unless ``action`` names it, as
    a destroy does), and from what, as the chain says (fetchml_infra.history.classify) once it is in step with
    the sink, another operator's entries included. None, and nothing written, when the chain's last move
    already went to ``image``: that is no change of the running image, and no entry may claim one. Why the
    entry did not reach the sink is added to ``notes``."""

    def decide(chain: list[Entry]) -> dict[str, str] | None:
        classified, from_image = history.classify(chain, stack, image)
        if from_image == image:
            return None
        return dict(action=action or classified, outcome=outcome, from_image=from_image, to_image=image,
                    actor=actor, reason=reason, stack=stack)  # fmt: skip

    entry, note = shipping_.move(log, shipping, decide)
    if note and notes is not None:
        notes.append(note)
    return entry


def shipping_for_log(stack: str, log: str) -> Shipping | None:
    """The shipping of a hand-written entry (``audit append``/``correct --log L --stack S``): stack S's, when
    this project has a stack S whose config names a sink; OperatorError when S ships another log than L."""
    from fetchml_infra import offline
    from fetchml_infra.procedure import load_config
    from fetchml_infra.workspace import OperatorError, Stack, project_home

    settings = project_home() / f"Pulumi.{stack}.yaml"
    try:
        config = (yaml.safe_load(settings.read_text()) or {}).get("config") or {}
    except FileNotFoundError:
        return None  # a log outside this project's stacks
    except (OSError, yaml.YAMLError) as exc:
        raise OperatorError(f"--stack: cannot read {settings}: {exc}") from None
    if not any(str(k).endswith(":auditSink") and v for k, v in config.items()):
        return None
    offline.apply()
    s = Stack(stack)
    cfg = load_config(s)
    mine = s.audit_log(cfg)
    if Path(mine).resolve() != Path(log).resolve():
        raise OperatorError(
            f"--log: stack '{stack}' keeps its chain in {mine} and ships it to {cfg.audit_sink}; saw {log}. "
            f"Append to that log, so that the entry reaches the sink too; nothing was written"
        )
    return shipping_of(cfg)
