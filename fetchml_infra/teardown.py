"""`fetchml-infra destroy`: the app and the stack go, the data stays unless asked, and the chain says so.

Pulumi's own `destroy` cannot do this alone: the volumes and the audit resource are protected (so it
refuses), and once they are unprotected it reports them "deleted" although `retain_on_delete` keeps them in
Docker. So the steps are: unprotect in the state only, destroy (Docker keeps the volumes), append a
`destroy` entry (from the running image to none), remove the stack from the backend (its Pulumi.<stack>.yaml
stays, so `pulumi stack init` and a deploy bring it back onto the same data), and only with `--delete-data`
remove the volumes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from fetchml_infra import audit, history, host
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import current_actor
from fetchml_infra.recording import record_move, shipping_of
from fetchml_infra.workspace import OperatorError, Stack

Say = Callable[[str], None]
VOLUME = "docker:index/volume:Volume"


def volumes(stack: Stack) -> list[str]:
    """The Docker names of the stack's volumes, from its state."""
    resources = stack.deployment().get("resources") or []
    return sorted(str((r.get("outputs") or {}).get("name")) for r in resources if r.get("type") == VOLUME)


def _record(cfg: StackConfig, log: str, outcome: str, reason: str, say: Say) -> None:
    """The move to no image, from the one the chain's last move went to (nothing, if it already ended at none:
    a destroy run again after one that stopped part-way records no second move). The destroy has happened:
    a failure to record it is said, with what to do, and never hides that."""
    notes: list[str] = []
    try:
        record_move(log, stack=cfg.stack, image=history.NO_IMAGE, actor=current_actor(), outcome=outcome,
                    reason=reason[:200], action="destroy", shipping=shipping_of(cfg), notes=notes)  # fmt: skip
    except (audit.AuditError, ValueError, OSError) as exc:
        say(f"the destroy's audit entry could not be written: {exc}; write it by hand with fetchml-infra audit append")
    for note in notes:
        say(f"warning: the destroy's audit entry was {note}")


def destroy(stack: Stack, cfg: StackConfig, reason: str, delete_data: bool, say: Say) -> int:
    """Tear the stack down; the exit code (0 done, 4 the engine failed part-way)."""
    log = stack.audit_log(cfg)
    audit.require_appendable(log)
    image = str(stack.outputs().get("image") or history.NO_IMAGE)
    kept = volumes(stack)
    say(f"destroy stack '{stack.name}' (running {image}); data volumes: {', '.join(kept) or 'none'}")
    unprotect = stack.pulumi("state", "unprotect", "--all", "--yes")
    if unprotect.returncode != 0:
        raise OperatorError(f"could not unprotect the stack's resources: {unprotect.stderr.strip()[-300:]}")
    run = stack.run(["destroy", "--yes", "--skip-preview", "--message", f"destroy: {reason}"])
    if not run.ok:
        gone = not host.app_containers(cfg.name_prefix)
        if gone:
            _record(cfg, log, "failure", f"destroy stopped part-way: {reason}", say)
        say(f"destroy failed part-way; the app is {'gone' if gone else 'still there'}: run it again")
        return 4
    _record(cfg, log, "success", reason, say)
    removed = stack.pulumi("stack", "rm", "--yes", "--preserve-config")
    if removed.returncode != 0:
        say(f"the app is gone but the stack could not be removed: {removed.stderr.strip()[-300:]}")
        return 4
    say(f"removed the app and stack '{stack.name}' (Pulumi.{stack.name}.yaml is kept); audit log {log} kept")
    if not delete_data:
        if kept:
            names = " ".join(kept)
            what = "the queue, the artifacts and the database"
            say(f"kept the data volumes ({what}); delete them with `docker volume rm {names}`")
        return 0
    for name in kept:
        done = subprocess.run(["docker", "volume", "rm", name], capture_output=True, text=True)
        say(f"deleted volume {name}" if done.returncode == 0 else f"could not delete volume {name}: {done.stderr}")
    return 0
