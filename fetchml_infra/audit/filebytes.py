"""The log file's bytes: the writers' lock, consistent snapshots for readers, lines counted and read backwards
in blocks, and the one-write-plus-fsync append of a line. ``logfile`` (entries, verify, append, seal) and
``shipping`` (the sink) are built on these."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from fetchml_infra.audit.line import ZERO_HASH, AuditError, Entry, _sha, is_chained
from fetchml_infra.audit.seal import seal_pin

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


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    pos = 0
    while pos < size:
        block = os.pread(fd, min(size - pos, 1 << 30), pos)
        if not block:
            break
        yield block
        pos += len(block)
