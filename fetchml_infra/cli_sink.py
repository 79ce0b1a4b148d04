"""fetchml-infra audit keygen | init-sink | sync | check-sink: the write-once sink of a stack's chain.

check-sink exit codes: 0 the local chain, the sink and the stack outputs agree and every object is locked;
1 at least one finding (each printed as ``KIND<TAB>stack<TAB>index<TAB>detail``); 2 the sink could not be
checked (unreachable, bad credentials, no bucket, no auditSink in config): never a pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from pulumi.automation.errors import CommandError

from fetchml_infra import offline, procedure
from fetchml_infra.audit import checkpoint, findings, shipping
from fetchml_infra.audit.filebytes import _read_all
from fetchml_infra.audit.line import AuditError, count_entries
from fetchml_infra.cli_audit import audit_app
from fetchml_infra.config import StackConfig
from fetchml_infra.console import StackOpt, fail, say
from fetchml_infra.recording import shipping_of
from fetchml_infra.workspace import OperatorError, Stack

EXIT_FINDINGS, EXIT_UNCHECKED = 1, 2


@contextlib.contextmanager
def _or_unchecked(after: str = "") -> Iterator[None]:
    """Whatever stops the check (a backend, sink or key that cannot be read, bad config) is exit 2, never a
    traceback and never a pass."""
    try:
        yield
    except KeyError as exc:  # an object listed, then gone (an unlocked bucket): never a pass
        fail(f"{exc} disappeared while it was being read; run the check again{after}", EXIT_UNCHECKED)
    except (OperatorError, CommandError, shipping.SinkError, AuditError, ValueError, OSError) as exc:
        fail(f"{exc}{after}", EXIT_UNCHECKED)


def _sink_of(stack: str) -> tuple[Stack, StackConfig, shipping.Shipping]:
    offline.apply()
    with _or_unchecked():
        s = Stack(stack)
        cfg = procedure.load_config(s)
        ship = shipping_of(cfg)
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
    with _or_unchecked():
        say(ship.sink.create_bucket())


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
    except (shipping.SinkError, AuditError, OSError) as exc:
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


def _policy_id(ship: shipping.Shipping, policy: findings.Policy) -> str:
    """What a sound verdict depended on: a change of endpoint, retention or trusted keys voids it."""
    signers = sorted((k, v.hex()) for k, v in policy.signers.items())
    held = [ship.sink.target.endpoint, policy.origin, policy.retention_days, signers]
    return hashlib.sha256(json.dumps(held).encode()).hexdigest()


def _verified(memory: Path, lines: list[bytes], policy_id: str) -> tuple[int, dict[int, str]]:
    """(entries, {checkpoint length: ETag}) found sound before under the same policy, if the local log still
    holds that head on that line."""
    try:
        seen = json.loads(memory.read_text())
        n, head = int(seen["entries"]), str(seen["head"])
        cps = {int(k): str(v) for k, v in dict(seen["checkpoints"]).items()}
        same = seen["policy"] == policy_id
    except (OSError, ValueError, KeyError, TypeError):
        return 0, {}
    sound = same and 0 < n <= len(lines) and lines[n - 1].rstrip(b"\n").endswith(head.encode())
    return (n, cps) if sound else (0, {})


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
    with _or_unchecked("\nnothing was checked"):
        local = _read_all(Path(s.audit_log(cfg)))  # as of a moment no append was in flight
        lines = findings.lines_of(local)
        outputs = s.outputs()
        recorded = (int(outputs["audit_length"]), str(outputs["audit_head"])) if outputs.get("audit_head") else None
        policy = findings.Policy(
            stack=stack,
            retention_days=cfg.audit_retention_days,
            signers=checkpoint.parse_signers(cfg.audit_signers),
            origin=ship.sink.origin,
        )
        memory, policy_id = _memory(ship), _policy_id(ship, policy)
        verified = (0, {}) if full else _verified(memory, lines, policy_id)
    with _or_unchecked("\nSINK_UNREACHABLE: nothing was checked"):
        view = ship.sink.view(dict(enumerate(lines)), verified)
    found = findings.compare(local, view, policy, recorded)
    for f in found:
        say(f.render(stack))
    n_local, n_sink = local.count(b"\n"), len(view.entries)
    n_checkpoints = len(set(view.checkpoints) | set(view.checkpoint_etags))  # read now, or sound and unchanged
    summary = f"local {count_entries(n_local)}, sink {count_entries(n_sink)}, {n_checkpoints} checkpoints verified"
    if found:
        say(f"FAILED: {len(found)} finding(s); {summary}")
        raise typer.Exit(EXIT_FINDINGS)
    if lines:
        head = lines[-1].rstrip(b"\n")[-64:].decode(errors="replace")
        seen = {"policy": policy_id, "entries": len(lines), "head": head, "checkpoints": view.checkpoint_etags}
        try:
            memory.parent.mkdir(parents=True, exist_ok=True)
            memory.write_text(json.dumps(seen))
        except OSError as exc:  # the next check reads everything again; this one stands
            say(f"note: could not remember this check in {memory}: {exc.strerror}")
    again = f" ({verified[0]} entries checked before and unchanged)" if verified[0] else ""
    say(f"ok: {summary}; every entry locked (COMPLIANCE, {cfg.audit_retention_days} days); outputs agree{again}")
