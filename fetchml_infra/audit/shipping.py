"""One chain in two places: the local log is a verified mirror of the write-once sink.

An append, under the local log's lock: first bring the two into step (take the lines the sink has and the log
lacks; send the lines the log has and the sink lacks, in order, so a failed upload heals on the next append),
then create the new line in the sink (create-only), and only then write it locally. A second writer that got
the same index first makes the create fail: take its line and build ours on it. So two operators' logs never
fork. When the sink cannot be reached the entry is written locally only and the result says so; the next
append or ``audit sync`` ships it (a HIPAA stack refuses to start a deploy in that state, ``preflight``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fetchml_infra.audit import checkpoint
from fetchml_infra.audit.line import AuditError, Entry, _sha, make_entry
from fetchml_infra.audit.logfile import (
    LOCK_TIMEOUT,
    _appending,
    _chunks,
    _count_lines,
    _head_for_append,
    _last_lines,
    _write,
)
from fetchml_infra.audit.logfile import (
    append as append_local,
)
from fetchml_infra.audit.scan import verify_bytes
from fetchml_infra.audit.target import SinkError, Taken, Target

if TYPE_CHECKING:
    from fetchml_infra.audit.sink import Sink  # boto3 loads only when a stack has a sink

_RETRIES = 5  # lost races for one index before giving up (each means another operator appended meanwhile)


__all__ = [
    "Diverged",
    "Shipping",
    "SinkError",
    "Step",
    "Taken",
    "append",
    "before_change",
    "catch_up",
    "connect",
    "sync",
]


class Diverged(AuditError):
    """The local log and the sink hold different lines at one index: a fork, for a person to investigate."""


@dataclass(frozen=True)
class Shipping:
    """Where a stack's entries go besides the local log, and the key that signs its checkpoints."""

    sink: Sink
    signer: checkpoint.Signer | None


@dataclass(frozen=True)
class Step:
    """What bringing the log and the sink into step did."""

    size: int
    pulled: int
    pushed: int


def _hint(sink: Sink) -> str:
    return f"Investigate: fetchml-infra audit check-sink --stack {sink.stack}"


def _reconcile(p: Path, fd: int, size: int, sink: Sink) -> Step:
    """Take what the sink has beyond the log, or send what the log has beyond the sink. Under the lock."""
    n = _count_lines(fd, size)
    last = _last_lines(fd, size, 1)[0] + b"\n" if n else b""
    newer = sink.lines_from(n)
    if newer:
        if n and sink.sha256_at(n - 1) != _sha(last):
            raise Diverged(f"{p}: line {n} differs from the audit sink's line {n}. {_hint(sink)}")
        data = b"".join(_chunks(fd, size)) + b"".join(newer)
        verdict = verify_bytes(data)
        if not verdict.ok:
            raise Diverged(
                f"{p}: the audit sink's lines {n + 1}-{n + len(newer)} do not extend this log "
                f"(line {verdict.first_bad_line}: {verdict.problem}). {_hint(sink)}"
            )
        block = b"".join(newer)
        if os.write(fd, block) != len(block):
            raise AuditError(f"{p}: could not write the {len(newer)} line(s) taken from the audit sink (disk full?)")
        os.fsync(fd)
        return Step(size + len(block), len(newer), 0)
    if n == 0 or sink.sha256_at(n - 1) == _sha(last):
        return Step(size, 0, 0)
    shipped = sink.length()
    lines = [line + b"\n" for line in b"".join(_chunks(fd, size)).split(b"\n")[:-1]]
    if shipped > n or (shipped and sink.sha256_at(shipped - 1) != _sha(lines[shipped - 1])):
        raise Diverged(f"{p}: the audit sink's line {shipped} is not this log's line {shipped}. {_hint(sink)}")
    for i in range(shipped, n):
        try:
            sink.put_entry(i, lines[i])
        except Taken:
            raise Diverged(
                f"{p}: another writer put a different line {i + 1} in the audit sink. {_hint(sink)}"
            ) from None
    return Step(size, 0, n - shipped)


def sync(path: str | os.PathLike[str], sink: Sink, lock_timeout: float = LOCK_TIMEOUT) -> Step:
    """Bring the log and the sink into step (``audit sync``, and before every deploy); SinkError, Diverged."""
    p = Path(path)
    with _appending(p, lock_timeout) as (fd, size):
        if size:
            _head_for_append(p, fd, size)  # a torn or plain last line: say so before touching the sink
        return _reconcile(p, fd, size, sink)


def catch_up(path: str | os.PathLike[str], shipping: Shipping | None) -> None:
    """``sync`` where a failure is no reason to stop: the append after it writes locally and says why."""
    if shipping is not None:
        with contextlib.suppress(SinkError, Diverged):
            sync(path, shipping.sink)


def append(
    path: str | os.PathLike[str],
    shipping: Shipping | None,
    *,
    action: str,
    outcome: str,
    from_image: str,
    to_image: str,
    actor: str,
    reason: str,
    stack: str,
    time: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> tuple[Entry, str]:
    """Append one entry, shipped first when there is a sink; (the entry, a note when it was not shipped)."""
    fields = dict(action=action, outcome=outcome, from_image=from_image, to_image=to_image, actor=actor)
    fields.update(reason=reason, stack=stack)
    if shipping is None:
        return append_local(path, **fields, time=time, lock_timeout=lock_timeout), ""
    p, sink = Path(path), shipping.sink
    with _appending(p, lock_timeout) as (fd, size):
        _head_for_append(p, fd, size)
        note, shipped = "", True
        try:
            size = _reconcile(p, fd, size, sink).size
        except (SinkError, Diverged) as exc:
            note, shipped = f"written to the local log only: {exc}", False
        for attempt in range(_RETRIES + 1):
            entry = make_entry(_head_for_append(p, fd, size), **fields, time=time)
            index = _count_lines(fd, size)
            if not shipped:
                break
            try:
                sink.put_entry(index, (entry.render() + "\n").encode())
                break
            except Taken:
                if attempt == _RETRIES:
                    raise AuditError(f"{p}: lost the race for line {index + 1} of the sink {_RETRIES} times") from None
                size = _reconcile(p, fd, size, sink).size  # another operator was first: build on their line
            except SinkError as exc:
                note, shipped = f"written to the local log only: {exc}", False
        _write(p, fd, entry)
        if shipped and shipping.signer is not None:
            cp = checkpoint.Checkpoint(sink.origin, index + 1, entry.hash)
            try:
                sink.put_checkpoint(index + 1, shipping.signer.sign(cp))
            except (SinkError, Taken) as exc:
                note = f"shipped, but its checkpoint was not: {exc}"
        elif shipped:
            note = "shipped without a checkpoint: this host has no audit signing key (fetchml-infra audit keygen)"
    return entry, note


def connect(url: str, retention_days: int, stack: str) -> Shipping | None:
    """The shipping of a stack whose config names a sink (``auditSink``), with this host's key if it has one."""
    if not url:
        return None
    from fetchml_infra.audit.sink import Sink

    path = checkpoint.default_key_path()
    signer = checkpoint.load(path) if path.exists() else None
    return Shipping(Sink(Target.parse(url, retention_days), stack), signer)


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
        return [*out, f"warning: {exc}; entries stay local until `fetchml-infra audit sync --stack {sink.stack}`"]
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
