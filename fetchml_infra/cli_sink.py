"""fetchml-infra audit keygen | init-sink | sync | check-sink: the write-once sink of a stack's chain.

check-sink exit codes: 0 the local chain, the sink and the stack outputs agree and every object is locked;
1 at least one finding (each printed as ``KIND<TAB>stack<TAB>index<TAB>detail``); 2 the sink could not be
checked (unreachable, bad credentials, no bucket, no auditSink in config): never a pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from fetchml_infra import offline, procedure
from fetchml_infra.audit import checkpoint, findings, shipping
from fetchml_infra.audit.line import AuditError, count_entries
from fetchml_infra.cli_audit import audit_app
from fetchml_infra.config import StackConfig
from fetchml_infra.console import StackOpt, fail, say
from fetchml_infra.workspace import OperatorError, Stack

EXIT_FINDINGS, EXIT_UNCHECKED = 1, 2


def _sink_of(stack: str) -> tuple[Stack, StackConfig, shipping.Shipping]:
    offline.apply()
    try:
        s = Stack(stack)
        cfg = procedure.load_config(s)
    except OperatorError as exc:
        fail(str(exc), EXIT_UNCHECKED)
    try:
        ship = shipping.connect(cfg.audit_sink, cfg.audit_retention_days, stack)
    except checkpoint.CheckpointError as exc:
        fail(str(exc), EXIT_UNCHECKED)
    if ship is None:
        fail(
            f"stack '{stack}' has no audit sink: set auditSink to http(s)://host[:port]/bucket "
            f"(pulumi config set auditSink ... --stack {stack})",
            EXIT_UNCHECKED,
        )
    return s, cfg, ship


@audit_app.command("keygen")
def keygen(
    name: Annotated[str, typer.Option(help="The key's name in signatures; default user@host.")] = "",
) -> None:
    """Create this host's checkpoint signing key (Ed25519; $FETCHML_AUDIT_KEY or
    ~/.config/fetchml-infra/audit-signing.key, mode 600) and print the auditSigners entry to add."""
    path = checkpoint.default_key_path()
    try:
        signer = checkpoint.create(path, name or checkpoint.default_name())
    except checkpoint.CheckpointError as exc:
        fail(str(exc), 2)
    say(f"created {path}")
    say(f"add it to each stack's trusted signers (comma-separated): {signer.name}:{signer.public()}")


@audit_app.command("init-sink")
def init_sink(stack: StackOpt) -> None:
    """Create the stack's sink bucket with Object Lock and a COMPLIANCE default retention (auditRetentionDays),
    or check that an existing one has them."""
    _, _, ship = _sink_of(stack)
    try:
        say(ship.sink.create_bucket())
    except shipping.SinkError as exc:
        fail(str(exc), EXIT_UNCHECKED)


@audit_app.command("sync")
def sync(stack: StackOpt) -> None:
    """Bring the local log and the sink into step: fill a fresh checkout's log from the sink, or send entries
    the sink lacks. A fork is exit 1 (check-sink names it); a sink that cannot be reached, exit 2."""
    s, cfg, ship = _sink_of(stack)
    log = s.audit_log(cfg)
    try:
        step = shipping.sync(log, ship.sink)
    except shipping.Diverged as exc:
        fail(str(exc), EXIT_FINDINGS)
    except (shipping.SinkError, AuditError) as exc:
        fail(str(exc), EXIT_UNCHECKED)
    lines = step.size and Path(log).read_bytes().count(b"\n")
    say(
        f"{log}: took {step.pulled} line(s) from {ship.sink.target.url()}, sent {step.pushed}; "
        f"{count_entries(lines)} in step"
    )


def _memory(ship: shipping.Shipping) -> Path:
    """Where this machine remembers how far it found the sink sound ($XDG_STATE_HOME or ~/.local/state)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "fetchml-infra" / "check-sink" / f"{ship.sink.target.bucket}-{ship.sink.stack}.json"


def _verified(memory: Path, lines: list[bytes]) -> tuple[int, int]:
    """(entries, checkpoints) found sound before, if the local log still holds that head on that line."""
    try:
        seen = json.loads(memory.read_text())
        n, head, cps = int(seen["entries"]), str(seen["head"]), int(seen["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
    return (n, cps) if 0 < n <= len(lines) and lines[n - 1].rstrip(b"\n").endswith(head.encode()) else (0, 0)


@audit_app.command("check-sink")
def check_sink(
    stack: StackOpt,
    full: Annotated[
        bool, typer.Option("--full", help="Read every object again, not only those new since the last sound check.")
    ] = False,
) -> None:
    """Compare the local chain, the sink and the stack outputs, and name every finding with its index.
    Objects found sound by an earlier check on this machine are not read again unless they changed (a new
    version or a delete marker shows in the listing); --full reads everything."""
    s, cfg, ship = _sink_of(stack)
    log = Path(s.audit_log(cfg))
    local = log.read_bytes() if log.exists() else b""
    lines = local[: local.rfind(b"\n") + 1].splitlines(True)
    outputs = s.outputs()
    recorded = (int(outputs["audit_length"]), str(outputs["audit_head"])) if outputs.get("audit_head") else None
    memory = _memory(ship)
    verified = (0, 0) if full else _verified(memory, lines)
    try:
        view = ship.sink.view(dict(enumerate(lines)), verified)
    except shipping.SinkError as exc:
        fail(f"{exc}\nSINK_UNREACHABLE: nothing was checked", EXIT_UNCHECKED)
    policy = findings.Policy(
        stack=stack,
        retention_days=cfg.audit_retention_days,
        signers=checkpoint.parse_signers(cfg.audit_signers),
        origin=ship.sink.origin,
    )
    found = findings.compare(local, view, policy, recorded)
    for f in found:
        say(f.render(stack))
    n_local, n_sink = local.count(b"\n"), len(view.entries)
    summary = (
        f"local {count_entries(n_local)}, sink {count_entries(n_sink)}, {len(view.checkpoints)} checkpoints verified"
    )
    if found:
        say(f"FAILED: {len(found)} finding(s); {summary}")
        raise typer.Exit(EXIT_FINDINGS)
    if lines:
        memory.parent.mkdir(parents=True, exist_ok=True)
        head = lines[-1].rstrip(b"\n")[-64:].decode()
        cps = max(view.checkpoints, default=verified[1] - 1) + 1
        memory.write_text(json.dumps({"entries": len(lines), "head": head, "checkpoints": max(cps, verified[1])}))
    again = f" ({verified[0]} entries checked before and unchanged)" if verified[0] else ""
    say(f"ok: {summary}; every entry locked (COMPLIANCE, {cfg.audit_retention_days} days); outputs agree{again}")
