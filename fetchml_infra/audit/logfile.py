"""The log file: append under an exclusive lock, one write + fsync per entry; read consistent snapshots.

Nothing here rewrites, truncates or repairs the file (``seal`` only appends: a newline after a torn last
line, and the entry that pins it). Writers serialise on ``<log>.lock`` (filelock,
beside the log); readers take the same lock only for the moment they read the file's size, so they never see
an append half-done and never hold up a writer while they read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from fetchml_infra.audit.line import ZERO_HASH, AuditError, Entry, _sha, is_chained, make_entry
from fetchml_infra.audit.scan import Verdict, verify_bytes
from fetchml_infra.audit.seal import seal_pin, seal_reason

PathLike = str | os.PathLike[str]
LOCK_TIMEOUT = 60.0  # seconds a writer waits for another; an emergency entry should still get through
_BLOCK = 1 << 16


def _verify_hint(path: Path) -> str:
    return f"Run: fetchml-infra audit verify --log {path}"


@contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold the exclusive lock that serialises every writer of ``path``."""
    lock = FileLock(f"{path}.lock", timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise AuditError(
            f"{path}: expected to lock {lock.lock_file} within {timeout:g}s, but another process holds it "
            f"(a fetchml-infra command still running?). Retry when it has finished."
        ) from exc
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _reading(path: Path) -> Iterator[tuple[int, int] | None]:
    """(fd, size) of the log as of a moment no append was in flight; None if there is no log.

    Appends only add bytes after ``size``, so everything before it stays valid while the caller reads."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            with _locked(path, 10.0):
                size = os.fstat(fd).st_size
        except (AuditError, OSError):  # a read-only copy, or a stuck writer: read what is there
            size = os.fstat(fd).st_size
        yield fd, size
    finally:
        os.close(fd)


def _read_all(path: Path) -> bytes:
    with _reading(path) as snap:
        return b"" if snap is None else os.pread(snap[0], snap[1], 0)


def _complete_end(fd: int, size: int) -> int:
    """Offset just past the last newline before ``size``: where the complete lines end."""
    pos = size
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        cut = os.pread(fd, step, pos).rfind(b"\n")
        if cut >= 0:
            return pos + cut + 1
    return 0


def _count_lines(fd: int, end: int) -> int:
    """How many lines end before ``end``, counted in large blocks."""
    count, pos = 0, 0
    while pos < end:
        block = os.pread(fd, min(64 * _BLOCK, end - pos), pos)
        count, pos = count + block.count(b"\n"), pos + len(block)
    return count


def _last_lines(fd: int, end: int, n: int) -> list[bytes]:
    """The last ``n`` lines before ``end`` (which follows a newline), newlines stripped, read backwards."""
    buf, pos = b"", end
    while pos > 0 and buf.count(b"\n") <= n:
        step = min(_BLOCK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    lines = buf.split(b"\n")[:-1]
    return lines[-n:] if n > 0 else []


def _sealed(lines: list[bytes]) -> set[int]:
    """Indices of the lines that the line after each pins as sealed (torn bytes, no entry)."""
    return {
        i - 1
        for i, line in enumerate(lines)
        if i and b"sealed-torn-line-sha256-" in line and seal_pin(line) == _sha(lines[i - 1])
    }


def _parse(path: Path, line: bytes, where: str) -> Entry:
    try:
        return Entry.parse(line.decode())
    except ValueError as exc:
        raise AuditError(f"{path} {where}: expected a valid chained entry: {exc}. {_verify_hint(path)}") from exc


def _head_of(path: Path, last: bytes) -> str:
    """The hash a new entry must link to, given the log's last complete line."""
    if not is_chained(last):
        raise AuditError(
            f"{path}: expected the last line to be a chained entry, saw a plain line {last[:100]!r}. "
            f"Adopt the plain log first: fetchml-infra audit adopt --log {path}"
        )
    return _parse(path, last, "last line").hash


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


@contextmanager
def _appending(path: Path, lock_timeout: float) -> Iterator[tuple[int, int]]:
    """Lock, open for append (creating the file and its directory if missing), and yield (fd, size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, lock_timeout):
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            yield fd, os.fstat(fd).st_size
        finally:
            os.close(fd)
        if not existed:  # make the new file's name durable too
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def _write(path: Path, fd: int, entry: Entry, lead: bytes = b"") -> None:
    """One write of the whole line (after ``lead``) on an O_APPEND fd, then fsync: a crash leaves the line or
    a torn tail, never a line interleaved with another writer's."""
    line = lead + (entry.render() + "\n").encode()
    try:
        written = os.write(fd, line)
        os.fsync(fd)
    except OSError as exc:
        raise AuditError(f"{path}: expected to write and fsync the entry, failed: {exc}. {_verify_hint(path)}") from exc
    if written != len(line):
        raise AuditError(
            f"{path}: expected to write {len(line)} bytes, the system wrote {written} (disk full?), so the "
            f"log now ends in a torn line. {_verify_hint(path)}"
        )


def _head_for_append(p: Path, fd: int, size: int) -> str:
    """The hash the next entry links to; AuditError when the last line is torn or plain."""
    if not size:
        return ZERO_HASH
    if os.pread(fd, 1, size - 1) != b"\n":
        torn = size - _complete_end(fd, size)
        raise AuditError(
            f"{p}: expected the log to end with a newline, but its last line is incomplete ({torn} "
            f"bytes, probably a write cut off by a crash). Nothing was appended. {_verify_hint(p)}; if "
            f"that is the only problem, keep the torn bytes and go on with: fetchml-infra audit seal "
            f"--log {p} --stack <stack>"
        )
    return _head_of(p, _last_lines(fd, size, 1)[0])


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


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    pos = 0
    while pos < size:
        block = os.pread(fd, min(size - pos, 1 << 30), pos)
        if not block:
            break
        yield block
        pos += len(block)
