"""The fast forms of check-sink: before a deploy changes anything (``before_change``: bring the log and the sink
into step, and refuse on a HIPAA stack what would leave a move unrecorded in the sink) and in the post-rollback
checklist (``in_step``: read only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fetchml_infra.audit import checkpoint
from fetchml_infra.audit.line import AuditError, _sha
from fetchml_infra.audit.shipping import Shipping, SinkError, sync

if TYPE_CHECKING:
    from fetchml_infra.audit.sink import Sink


def before_change(log: str, shipping: Shipping, signers: dict[str, bytes], *, hipaa: bool) -> list[str]:
    """The fast form of check-sink, before a deploy changes anything: bring the log and the sink into step
    (another operator's entries come in, unshipped ones go out). Lines to print, each starting "ok" or
    "warning"; AuditError to refuse: a fork, or, on a HIPAA stack, a sink that cannot take the entry or a
    checkpoint no listed key could sign."""
    sink = shipping.sink
    out: list[str] = []
    signer = shipping.signer
    if signer is None or signers.get(signer.name) != checkpoint.public_bytes(signer.key):
        why = (
            f"this host's audit signing key ({signer.name}) is not listed in auditSigners"
            if signer
            else f"this host has no audit signing key ({checkpoint.default_key_path()})"
        )
        fix = "fetchml-infra audit keygen prints the auditSigners entry to add"
        if hipaa:
            raise AuditError(f"{why}, so its checkpoints could not be verified. Nothing was changed. {fix}")
        out.append(f"warning: {why}; checkpoints will not verify ({fix})")
    try:
        step = sync(log, sink)
    except SinkError as exc:
        if hipaa:
            raise AuditError(
                f"{exc}\nA HIPAA stack records every change in its write-once sink: nothing was changed. Bring "
                f"the sink back (or fix its credentials), then run again; check it with: fetchml-infra audit "
                f"check-sink --stack {sink.stack}"
            ) from None
        return [
            *out,
            f"warning: {exc}. So this log may lack other operators' newest entries, and this change's entry will be "
            f"written here only, then shipped by the next append or `fetchml-infra audit sync --stack {sink.stack}`",
        ]
    moved = f" (took {step.pulled} line(s) from the sink, sent {step.pushed})" if step.pulled or step.pushed else ""
    return [*out, f"ok  audit sink {sink.target.url()} and the local log are in step{moved}"]


def in_step(path: str | os.PathLike[str], sink: Sink) -> tuple[bool, str]:
    """Whether the sink holds exactly the log's lines, judged by the last one (its sha256) and the one after it
    (none): the post-rollback checklist's fast form of check-sink. Reads only; never raises for the sink."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    n = data.count(b"\n")
    last = data[: data.rfind(b"\n") + 1].rsplit(b"\n", 2)[-2] + b"\n" if n else b""
    try:
        here, beyond = (sink.sha256_at(n - 1) if n else None), sink.sha256_at(n)
    except SinkError as exc:
        return False, str(exc)
    if beyond is not None:
        return False, f"the sink has more than the local log's {n} lines: fetchml-infra audit sync --stack {sink.stack}"
    if n and here != _sha(last):
        why = "lacks" if here is None else "holds another"
        return False, f"the sink {why} line {n}: fetchml-infra audit check-sink --stack {sink.stack}"
    return True, f"{sink.target.url()} holds all {n} lines (full check: fetchml-infra audit check-sink)"
