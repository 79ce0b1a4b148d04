"""The log as entries: verify, read (entries, tail, head), append under the writers' lock, adopt, seal; on
the file primitives of ``filebytes`` (one write + fsync per entry, consistent snapshots for readers).

Nothing here rewrites, truncates or repairs the file (``seal`` only appends: a newline after a torn last
line, and the entry that pins it). Writers serialise on ``<log>.lock`` (filelock, beside the log); readers
take the same lock only for the moment they read the file's size, so they never see an append half-done and
never hold up a writer while they read. With a sink, appends go through ``shipping`` instead.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from fetchml_infra.audit.filebytes import (
    LOCK_TIMEOUT,
    _appending,
    _chunks,
    _complete_end,
    _count_lines,
    _head_for_append,
    _head_of,
    _last_lines,
    _parse,
    _read_all,
    _reading,
    _sealed,
    _verify_hint,
    _write,
)
from fetchml_infra.audit.line import ZERO_HASH, AuditError, Entry, _sha, is_chained, make_entry
from fetchml_infra.audit.scan import Verdict, verify_bytes
from fetchml_infra.audit.seal import seal_pin, seal_reason

PathLike = str | os.PathLike[str]


def verify(
    source: PathLike | bytes,
    expected_head: str | None = None,
    expected_length: int | None = None,
    *,
    allow_longer: bool = False,
) -> Verdict:
    """Verify a whole log, given its path (a missing file is an empty log) or its content as bytes.

    Reports the first bad line and what is wrong: ``changed``, ``inserted``, ``deleted``, ``reordered``,
    ``malformed``, or ``partial-last-line`` (a torn write; the complete lines before it still count). A torn
    line sealed by ``seal`` verifies, and so does the chain after it: each line counts, the sealed one too.
    ``expected_head``/``expected_length`` are a (head, length) recorded earlier, e.g. in stack outputs: a log
    that no longer reaches that length is ``truncated``; one whose line ``expected_length`` carries another
    hash is ``rewritten``; lines after the recorded head are ``inserted`` unless ``allow_longer``."""
    data = source if isinstance(source, bytes) else _read_all(Path(source))
    return verify_bytes(data, expected_head, expected_length, allow_longer=allow_longer)


def require_intact(
    path: PathLike,
    expected_head: str | None = None,
    expected_length: int | None = None,
    *,
    consequence: str = "Nothing was changed.",
) -> Verdict:
    """verify, for callers about to act on the chain: AuditError when it is broken or no longer reaches the
    recorded head, saying the first bad line, what ``consequence`` that had, and the command to investigate."""
    verdict = verify(path, expected_head, expected_length, allow_longer=True)
    if not verdict.ok:
        recorded = f" --head {expected_head} --length {expected_length}" if expected_head else ""
        raise AuditError(
            f"audit chain {path} does not verify: line {verdict.first_bad_line}: {verdict.problem}: "
            f"{verdict.detail}\n{consequence} Investigate first (anomalies in the audit log are investigated, "
            f"not rolled back over): fetchml-infra audit verify --log {path}{recorded}"
        )
    return verdict


def entries(path: PathLike) -> list[Entry]:
    """Every chained entry, oldest first (an adopted plain prefix and sealed lines are skipped, a torn last
    line ignored).

    AuditError on a line that does not parse or whose hash is wrong, or a seal entry with no sealed line
    right above it; links are verify's business."""
    p = Path(path)
    return entries_of(p, _read_all(p))


def entries_of(p: Path, data: bytes) -> list[Entry]:
    """``entries`` of bytes already read (a writer holding the lock reads its own fd)."""
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
    sealed = _sealed(lines)
    start = next((i for i, line in enumerate(lines) if is_chained(line) and i not in sealed), len(lines))
    out = []
    for i in range(start, len(lines)):
        if i in sealed:
            continue
        entry = _parse(p, lines[i], f"line {i + 1}")
        if entry.action == "seal" and i - 1 not in sealed:
            raise AuditError(
                f"{p} line {i + 1}: expected a seal entry right below the line it seals (sha256 "
                f"{seal_pin(lines[i])}), but line {i} is not that line. {_verify_hint(p)}"
            )
        out.append(entry)
    return out


def tail(path: PathLike, n: int) -> list[Entry]:
    """The last ``n`` chained entries, oldest first; reads only the end of the file."""
    p = Path(path)
    want = n + 2  # lines to read: one more for each sealed line among them
    with _reading(p) as snap:
        if snap is None or n <= 0:
            return []
        end = _complete_end(*snap)
        while True:
            lines = _last_lines(snap[0], end, want)
            sealed = _sealed(lines)
            chained = [line for i, line in enumerate(lines) if is_chained(line) and i not in sealed]
            if len(chained) >= n or len(lines) < want:
                break
            want *= 2
    chained = chained[-n:]
    return [_parse(p, line, f"line {i - len(chained)} from the end") for i, line in enumerate(chained)]


def head(path: PathLike) -> tuple[str, int]:
    """(hash of the last complete line, number of complete lines): what to record to detect a cut-off or
    rewritten log later. Reads the last line and counts newlines; it does not verify (verify does)."""
    p = Path(path)
    with _reading(p) as snap:
        if snap is None:
            return ZERO_HASH, 0
        fd, size = snap
        end = _complete_end(fd, size)
        if end == 0:
            return ZERO_HASH, 0
        return _head_of(p, _last_lines(fd, end, 1)[0]), _count_lines(fd, end)


def append(
    path: PathLike,
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
) -> Entry:
    """Append one entry after the log's last line; returns it once it is fsynced. Creates a missing log.

    AuditError (nothing written) when the last line is torn (seal it first), plain (adopt first) or not a
    valid entry; ValueError naming the field when a value is invalid."""
    p = Path(path)
    if action == "seal":
        raise ValueError(
            "audit field 'action' must not be 'seal' here: seal entries pin a torn line and only "
            "seal() (fetchml-infra audit seal) writes them"
        )
    with _appending(p, lock_timeout) as (fd, size):
        entry = make_entry(
            _head_for_append(p, fd, size),
            action=action,
            outcome=outcome,
            from_image=from_image,
            to_image=to_image,
            actor=actor,
            reason=reason,
            stack=stack,
            time=time,
        )
        _write(p, fd, entry)
    return entry


def adopt(
    path: PathLike,
    *,
    actor: str,
    stack: str,
    time: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> Entry:
    """Start the chain under an existing plain log: append an ``adopt`` entry whose prev (and reason,
    ``adopted-<n>-lines-sha256-<hex>``) pins the sha256 of every byte above it, so that verify can tell if
    those lines change later."""
    p = Path(path)
    if not p.exists():
        raise AuditError(f"{p}: expected an existing plain log to adopt, found no file (appends create the log)")
    with _appending(p, lock_timeout) as (fd, size):
        data = os.pread(fd, size, 0)
        if not data.endswith(b"\n"):
            seen = "an empty file" if not data else "an incomplete last line"
            raise AuditError(f"{p}: expected plain lines each ending in a newline, saw {seen}; nothing adopted")
        lines = data.split(b"\n")[:-1]
        chained = next((i for i, line in enumerate(lines, 1) if is_chained(line)), None)
        if chained:
            raise AuditError(
                f"{p}: expected a plain log, but line {chained} is already chained; nothing "
                f"adopted. {_verify_hint(p)}"
            )
        digest = _sha(data)
        entry = make_entry(
            digest,
            action="adopt",
            outcome="success",
            from_image="-",
            to_image="-",
            actor=actor,
            reason=f"adopted-{len(lines)}-lines-sha256-{digest}",
            stack=stack,
            time=time,
        )
        _write(p, fd, entry)
    return entry


def seal(
    path: PathLike,
    *,
    actor: str,
    stack: str,
    time: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> Entry:
    """Go on after a torn last line without losing a byte: when that is the log's only problem, append
    "\\n" (the torn bytes become a line of their own, kept as they are) and a ``seal`` entry, in one write
    and fsync. The seal's reason, ``sealed-torn-line-sha256-<hex>``, pins the torn bytes; its prev is the
    hash of the last chained entry, so the chain goes on across the sealed line and appends work again.

    AuditError (nothing written) when there is no torn last line, or anything else is wrong with the log."""
    p = Path(path)
    if not p.exists():
        raise AuditError(f"{p}: expected a log whose last line is torn, found no file; nothing to seal")
    with _appending(p, lock_timeout) as (fd, size):
        data = b"".join(_chunks(fd, size))
        verdict = verify_bytes(data)
        if verdict.ok:
            raise AuditError(
                f"{p}: expected a torn last line (no newline at the end) to seal, but the log ends with a "
                f"complete line and verifies ({verdict.length} lines): nothing to seal, appends work as they are"
            )
        if verdict.problem != "partial-last-line":
            raise AuditError(
                f"{p}: expected a torn last line to be the log's only problem, but verify reports line "
                f"{verdict.first_bad_line}: {verdict.problem}: {verdict.detail}. Nothing was sealed: that "
                f"needs investigating, not sealing. {_verify_hint(p)}"
            )
        torn = data[data.rfind(b"\n") + 1 :]
        if verdict.head == ZERO_HASH and len(torn) < len(data):
            raise AuditError(
                f"{p}: expected a chained log, but the complete lines above the torn one are plain lines "
                f"that were never adopted; nothing was sealed"
            )
        entry = make_entry(
            verdict.head,
            action="seal",
            outcome="success",
            from_image="-",
            to_image="-",
            actor=actor,
            reason=seal_reason(torn),
            stack=stack,
            time=time,
        )
        _write(p, fd, entry, lead=b"\n")  # one write: never the newline without its seal
    return entry
