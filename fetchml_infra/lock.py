"""Who may act on a stack: our per-stack operator lock, and reading Pulumi's own lock in a file backend.

The operator lock is ``flock`` on a file that is never deleted: the kernel releases it when its holder exits,
even by SIGKILL, so it cannot go stale, and never unlinking the file means two takers can never lock two
different inodes. The JSON record inside only says who holds it; it is trusted only while the lock is held.

Pulumi's DIY backend lock is a plain file ``<backend>/.pulumi/locks/<stack>/<uuid>.json`` (project-scoped
stacks: ``.pulumi/locks/organization/<project>/<stack>/<uuid>.json``), written by the ``pulumi`` process and
deleted when it unlocks, so a ``kill -9`` leaves it behind for good. Here we only read it and judge whether its
holder is provably gone; removing it stays with ``pulumi cancel`` or the operator.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

_POLL = 0.1  # seconds between tries while waiting for the operator lock
_GRACE = 0.05  # even wait=0 retries this long: current_holder's probe holds a shared lock for microseconds
_NO_RECORD = "another process (no holder record yet)"


@dataclass(frozen=True)
class Holder:
    """Who holds the operator lock, as written into the lock file."""

    actor: str
    host: str
    pid: int
    command: str
    since: str

    def describe(self) -> str:
        if self.pid <= 0:
            return _NO_RECORD
        return f"{self.actor} on {self.host} (pid {self.pid}) running `{self.command}` since {self.since}"


UNKNOWN_HOLDER = Holder("unknown", "unknown", 0, "unknown", "unknown")  # held, but no readable record yet


def this_process(command: str, actor: str) -> Holder:
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Holder(actor, socket.gethostname(), os.getpid(), command, since)


def parse_holder(data: bytes) -> Holder | None:
    """The record in ``data``, or None when it is empty or not a complete record (a taker between flock and
    write, or a write cut off by a crash)."""
    try:
        raw = json.loads(data)
        fields = {k: raw[k] for k in ("actor", "host", "pid", "command", "since")}
    except (ValueError, TypeError, KeyError):
        return None
    if type(fields["pid"]) is not int or any(type(v) is not str for k, v in fields.items() if k != "pid"):
        return None
    return Holder(**fields)


class LockHeld(Exception):
    """Another operator holds the stack; raised before anything was changed."""

    def __init__(self, stack: str, holder: Holder | None, waited: float = 0.0) -> None:
        self.stack, self.holder = stack, holder
        who = holder.describe() if holder else _NO_RECORD
        still = f" (still, after waiting {waited:g}s)" if waited > 0 else ""
        super().__init__(
            f"stack '{stack}' is held by {who}{still}; nothing was changed. "
            f"Wait for it to finish, or add --wait SECONDS"
        )


def _try_flock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _record(fd: int) -> Holder | None:
    return parse_holder(os.pread(fd, 1 << 16, 0))


@contextmanager
def operator_lock(path: Path, stack: str, holder: Holder, wait: float = 0.0) -> Iterator[Holder]:
    """Hold the operator lock of ``stack`` for the ``with`` body, recording ``holder`` in ``path``.

    LockHeld at once when another process holds it (``wait`` = 0), or when it is still held after ``wait``
    seconds. The fd is close-on-exec, so programs we start (pulumi) never hold it; a fork without exec would.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + max(wait, _GRACE)
        while not _try_flock(fd, fcntl.LOCK_EX):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockHeld(stack, _record(fd), wait)
            time.sleep(min(_POLL, left))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(holder)).encode() + b"\n", 0)
            os.fsync(fd)
            yield holder
        finally:
            os.ftruncate(fd, 0)  # a record left by a SIGKILLed holder is harmless: read only while held
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def current_holder(path: Path) -> Holder | None:
    """Who holds the operator lock now: None when it is free (or there is no lock file), UNKNOWN_HOLDER when
    it is held but the holder has not written its record yet. Probes with a non-blocking shared lock that is
    released at once, so it never waits and never holds up a taker beyond operator_lock's grace."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _record(fd) or UNKNOWN_HOLDER
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EngineLock:
    """One lock file of Pulumi's DIY backend (Go ``lockContent`` in pkg/backend/diy/lock.go)."""

    path: Path
    pid: int
    username: str
    hostname: str
    timestamp: str  # as Pulumi wrote it: Go time.Time JSON, RFC 3339 with nanoseconds and the local offset

    def describe(self) -> str:
        if self.pid <= 0:
            return f"a pulumi lock file that cannot be read ({self.path})"
        return f"pulumi (pid {self.pid}) of {self.username} on {self.hostname} since {self.timestamp}"


def parse_engine_lock(path: Path, data: bytes) -> EngineLock:
    """Pulumi's ``{"pid":..,"username":..,"hostname":..,"timestamp":..}``; anything else is reported with
    pid 0 and "unknown" fields, never raised: a garbled lock still blocks pulumi, so it must be shown."""
    unknown = EngineLock(path, 0, "unknown", "unknown", "unknown")
    try:
        raw = json.loads(data)
        pid, user, host, stamp = raw["pid"], raw["username"], raw["hostname"], raw["timestamp"]
    except (ValueError, TypeError, KeyError):
        return unknown
    if type(pid) is not int or not 0 < pid < 1 << 31 or any(type(v) is not str for v in (user, host, stamp)):
        return unknown
    return EngineLock(path, pid, user, host, stamp)


def engine_locks(backend_dir: Path, stack: str) -> list[EngineLock]:
    """Every lock file Pulumi would see for ``stack`` under the backend directory (of a ``file://`` URL), in
    both layouts: ``.pulumi/locks/<stack>/`` and ``.pulumi/locks/organization/<project>/<stack>/``. A fully
    qualified ``organization/<project>/<stack>`` is found by the first. Like Pulumi, every blob counts; the
    ``.attrs`` files beside them are the blob store's own metadata (gocloud fileblob), not locks."""
    root = backend_dir / ".pulumi" / "locks"
    found = []
    for folder in [root / stack, *sorted(root.glob(f"organization/*/{stack}"))]:
        for file in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not file.is_file() or file.name.endswith(".attrs"):
                continue
            try:
                data = file.read_bytes()
            except FileNotFoundError:  # pulumi unlocked while we listed
                continue
            except OSError:
                data = b""
            found.append(parse_engine_lock(file, data))
    return found


def gone_from_facts(lock: EngineLock, this_host: str, pid_exists: bool, cmdline: bytes | None) -> bool:
    """The decision alone: gone only when provable, i.e. the lock names this host and its pid is either no
    process or a process that is not pulumi (the pid was reused). ``cmdline`` None means it could not be read.
    """
    if lock.pid <= 0 or lock.hostname != this_host:
        return False
    if not pid_exists:
        return True
    return cmdline is not None and b"pulumi" not in cmdline.lower()


def holder_gone(lock: EngineLock, this_host: str | None = None) -> bool:
    """True when the ``pulumi`` that wrote ``lock`` has provably exited (see gone_from_facts). A pulumi in a
    container that shares this hostname but not the pid namespace cannot be told apart: don't run it so."""
    host = socket.gethostname() if this_host is None else this_host
    if lock.pid <= 0 or lock.hostname != host:
        return False  # no pid of ours to look at
    try:  # cmdline first: if the process then turns out to be gone, what we read does not matter
        cmdline: bytes | None = Path(f"/proc/{lock.pid}/cmdline").read_bytes()  # b"" for a zombie
    except OSError:  # gone, no /proc, or hidden from us: the kill below decides, else unknown
        cmdline = None
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return gone_from_facts(lock, host, False, None)
    except PermissionError:  # another user's process: it exists
        pass
    return gone_from_facts(lock, host, True, cmdline)
