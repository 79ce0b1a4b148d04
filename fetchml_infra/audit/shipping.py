"""One chain in two places: the local log is a verified mirror of the write-once sink.

An append, under the local log's lock: first bring the two into step (take the lines the sink has and the log
lacks; send the lines the log has and the sink lacks, in order, so a failed upload heals on the next append),
then decide the entry from the chain as it now stands (another operator's move may have come in), create it
in the sink (create-only), and only then write it locally. A second writer that got the same index first makes
the create fail: take its line, decide again, build on it. So two operators' logs never fork. When the sink
cannot be reached the entry is written locally only and the result says so; the next append or ``audit sync``
ships it (a HIPAA stack refuses to start a deploy in that state, ``sink_checks``).
"""

from __future__ import annotations

import contextlib
import os
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fetchml_infra.audit import checkpoint
from fetchml_infra.audit.filebytes import (
    LOCK_TIMEOUT,
    _appending,
    _chunks,
    _complete_end,
    _count_lines,
    _head_for_append,
    _last_lines,
    _write,
)
from fetchml_infra.audit.findings import lines_of
from fetchml_infra.audit.line import AuditError, Entry, _sha, make_entry
from fetchml_infra.audit.logfile import entries_of
from fetchml_infra.audit.scan import verify_bytes
from fetchml_infra.audit.target import Contested, SinkError, Taken, Target

if TYPE_CHECKING:
    from fetchml_infra.audit.sink import Sink  # boto3 loads only when a stack has a sink

_RETRIES = 5  # lost races for one index before giving up (each means another operator appended meanwhile)

Fields = dict[str, str]
Decide = Callable[[list[Entry]], "Fields | None"]  # the chain's entries -> the entry to append, or None: no change

__all__ = [
    "Diverged",
    "Shipping",
    "SinkError",
    "Step",
    "Taken",
    "append",
    "catch_up",
    "complete_torn",
    "connect",
    "move",
    "sync",
]


class Diverged(AuditError):
    """The local log cannot be put in step with the sink (a fork, or a local chain that does not verify): for a
    person to investigate; nothing is sent or taken."""


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


def _complete_torn(p: Path, fd: int, size: int, sink: Sink) -> int:
    """A crash between the sink's create and the local write can leave the local line torn: when its bytes
    begin the sink's line, write the rest (the line was shipped whole). The new size."""
    end = _complete_end(fd, size)
    if end == size:  # ends in a newline (or is empty): nothing torn
        return size
    torn, n = os.pread(fd, size - end, end), _count_lines(fd, end)
    try:
        whole = sink.lines_from(n)[:1]
    except SinkError as exc:
        raise AuditError(
            f"{p}: its last line is incomplete, and the audit sink that may hold it whole cannot be read ({exc}). "
            f"Do not seal it: bring the sink back, then run fetchml-infra audit sync --stack {sink.stack}"
        ) from None
    if not whole:
        return size  # never shipped: sealing it is the way, and _head_for_append says so
    if not whole[0].startswith(torn):
        raise Diverged(f"{p}: its incomplete last line is not the start of the sink's line {n + 1}. {_hint(sink)}")
    rest = whole[0][len(torn) :]
    if os.write(fd, rest) != len(rest):
        raise AuditError(f"{p}: could not complete its torn last line from the audit sink (disk full?)")
    os.fsync(fd)
    return size + len(rest)


def _reconcile(p: Path, fd: int, size: int, sink: Sink) -> Step:
    """Take what the sink has beyond the log, or send what the log has beyond the sink. Under the lock."""
    size = _complete_torn(p, fd, size, sink)
    _head_for_append(p, fd, size)  # a torn (never shipped) or plain last line: say so before touching the sink
    n = _count_lines(fd, size)
    last = _last_lines(fd, size, 1)[0] + b"\n" if n else b""
    newer = sink.lines_from(n)
    if newer:
        if n and sink.sha256_at(n - 1) != _sha(last):
            raise Diverged(f"{p}: line {n} differs from the audit sink's line {n}. {_hint(sink)}")
        verdict = verify_bytes(b"".join(_chunks(fd, size)) + b"".join(newer))
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
    data = b"".join(_chunks(fd, size))
    verdict = verify_bytes(data)
    if not verdict.ok:  # a sink holds a verified chain or nothing: never ship a broken one
        raise Diverged(
            f"{p}: line {verdict.first_bad_line}: {verdict.problem}; nothing was sent to the audit sink. "
            f"Run: fetchml-infra audit verify --log {p}"
        )
    shipped = sink.length()
    lines = lines_of(data)
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
        return _reconcile(p, fd, size, sink)


def complete_torn(path: str | os.PathLike[str], sink: Sink, lock_timeout: float = LOCK_TIMEOUT) -> bool:
    """Complete a torn last line from the sink when the sink holds it whole (before ``audit seal``): whether it
    did. AuditError when the sink cannot be read (sealing then could fork the chain), Diverged on a fork."""
    p = Path(path)
    with _appending(p, lock_timeout) as (fd, size):
        return _complete_torn(p, fd, size, sink) != size


def catch_up(path: str | os.PathLike[str], shipping: Shipping | None) -> None:
    """``sync`` where a failure is no reason to stop: the append after it writes locally and says why."""
    if shipping is not None:
        with contextlib.suppress(SinkError, Diverged):
            sync(path, shipping.sink)


def _locked_append(
    p: Path, shipping: Shipping | None, choose: Callable[[int, int], Fields | None], when: datetime | None,
    lock_timeout: float,
) -> tuple[Entry | None, str]:  # fmt: skip
    """Under the lock: into step, ``choose`` (fd, size) -> fields, ship, write. (entry or None, note)."""
    sink = shipping.sink if shipping is not None else None
    with _appending(p, lock_timeout) as (fd, size):
        note = ""
        for attempt in range(_RETRIES + 1):
            if sink is not None and not note:
                try:
                    size = _reconcile(p, fd, size, sink).size
                except (SinkError, Diverged) as exc:
                    if attempt:  # the sink holds another writer's line here: ours may not go in locally alone
                        raise AuditError(f"{p}: lost a race for a line of the audit sink, then: {exc}") from None
                    note = f"written to the local log only: {exc}"
            fields = choose(fd, size)
            if fields is None:
                return None, note
            if fields.get("action") == "seal":
                raise ValueError("audit field 'action' must not be 'seal' here: only audit seal writes seals")
            entry = make_entry(_head_for_append(p, fd, size), **fields, time=when)
            if sink is None or note:
                break
            index = _count_lines(fd, size)
            try:
                sink.put_entry(index, (entry.render() + "\n").encode())
                break
            except Contested as exc:  # their line or ours: unknown, so none of ours goes in locally
                raise AuditError(f"{p}: line {index + 1} of the audit sink is contested: {exc}") from None
            except Taken:  # another operator was first: take their line and decide again on top of it
                if attempt == _RETRIES:
                    raise AuditError(f"{p}: lost the race for line {index + 1} of the sink {_RETRIES} times") from None
                clock.sleep(0.05 * (attempt + 1))
            except SinkError as exc:  # the same entry goes in locally; the next append ships it
                note = f"written to the local log only: {exc}"
                break
        _write(p, fd, entry)
        if sink is not None and not note:
            note = _checkpoint(sink, shipping.signer if shipping else None, index + 1, entry.hash)
    return entry, note


def _checkpoint(sink: Sink, signer: checkpoint.Signer | None, length: int, head: str) -> str:
    if signer is None:
        return "shipped without a checkpoint: this host has no audit signing key (fetchml-infra audit keygen)"
    try:
        sink.put_checkpoint(length, signer.sign(checkpoint.Checkpoint(sink.origin, length, head)))
    except (SinkError, Taken) as exc:
        return f"shipped, but its checkpoint was not: {exc}"
    return ""


def move(
    path: str | os.PathLike[str],
    shipping: Shipping | None,
    decide: Decide,
    *,
    time: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> tuple[Entry | None, str]:
    """Append the entry ``decide`` makes of the chain as it stands once in step with the sink (None: no entry,
    the chain already says so). (the entry or None, a note when it was not shipped)."""
    p = Path(path)
    return _locked_append(
        p, shipping, lambda fd, size: decide(entries_of(p, os.pread(fd, size, 0))), time, lock_timeout
    )


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
    entry, note = _locked_append(Path(path), shipping, lambda _fd, _size: fields, time, lock_timeout)
    assert entry is not None  # fixed fields always make an entry
    return entry, note


def connect(url: str, retention_days: int, stack: str) -> Shipping | None:
    """The shipping of a stack whose config names a sink (``auditSink``), with this host's key if it has one."""
    if not url:
        return None
    from fetchml_infra.audit.sink import Sink

    path = checkpoint.default_key_path()
    signer = checkpoint.load(path) if path.exists() else None
    return Shipping(Sink(Target.parse(url, retention_days), stack), signer)
