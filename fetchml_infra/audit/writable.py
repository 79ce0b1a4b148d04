"""Could an append to the audit log succeed? Asked before a deploy changes anything, changing nothing itself.

``append`` creates the log's missing directories, opens ``<log>.lock`` read-write (creating it if missing,
truncating it), opens the log read-write for append (creating it if missing), writes one line and fsyncs.
Each step is checked the way the kernel would refuse it: files that exist are opened with the same access
but without O_CREAT or O_TRUNC and closed unwritten; for a file that is missing, access(2) asks whether the
directory it would be created in takes new entries; statvfs says whether there is room. Nothing is created,
written or truncated, and no timestamp changes.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from fetchml_infra.audit.line import AuditError

PathLike = str | os.PathLike[str]
# Free space an append needs, with room to spare. An entry is a few hundred bytes, but file systems allocate
# whole blocks (4 KiB usually, 64 KiB pages on some arm64 kernels), a new log also needs an inode and a
# directory entry, and a long reason (a health check's words) makes a longer line. 64 KiB is one largest
# block or sixteen of 4 KiB; a disk that full fails the deploy's own writes (Pulumi state) anyway.
FREE_SPACE_MARGIN = 64 * 1024
_libc = ctypes.CDLL(None, use_errno=True)


def _hint(target: Path, code: int | None, is_lock: bool) -> str:
    if code == errno.EROFS:
        return (
            f"Its file system is mounted read-only: remount it read-write (find it with: findmnt -T {target}; "
            f"then mount -o remount,rw <mountpoint>), or keep the audit log on a writable disk."
        )
    if code == errno.EPERM:
        attrs = ("i or a (immutable or append-only)", "-i -a") if is_lock else ("i (immutable)", "-i")
        return f"If lsattr -d {target} shows {attrs[0]}, clear it: chattr {attrs[1]} {target}"
    if code == errno.EACCES:
        return f"Give the user running the deploy write access to it (ls -ld {target})."
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"Free space on its file system (df -h {target}; df -i {target} for inodes)."
    if code == errno.EISDIR:
        return "It is a directory: point the audit log (auditLog, --log) at a file, e.g. <dir>/audit.log."
    if code == errno.ENOTDIR:
        return "A part of the path is a file, not a directory: fix the audit log path (auditLog, --log)."
    return "Fix that, then run the deploy again."


def _refuse(log: Path, target: Path, expected: str, code: int | None, seen: str = "") -> AuditError:
    words = f"{os.strerror(code or 0)} ({errno.errorcode.get(code or 0, '?')})"
    return AuditError(
        f"audit log {log}: expected {expected}, but {target}: {seen}{words}, so the deploy's audit entry "
        f"could not be written. Nothing was changed. {_hint(target, code, target.name == log.name + '.lock')}"
    )


def _opens(log: Path, path: Path, what: str, flags: int) -> bool:
    """True if ``path`` opens with ``flags`` (closed at once, unwritten); False if it does not exist."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _refuse(log, path, f"to open {what} for writing", exc.errno) from exc
    os.close(fd)
    return True


def require_appendable(path: PathLike) -> None:
    """AuditError when ``append`` to the log at ``path`` could not succeed; call it before changing anything.

    Refused: a log or lock file that will not open for writing (immutable, read-only file system, a
    directory), a missing log or lock whose directory takes no new entries, less than ``FREE_SPACE_MARGIN``
    bytes free (or no free inode for a file to create). A missing log in a writable directory passes: append creates it.
    A log with the append-only attribute passes: append only appends. Whether the chain can be extended (a
    torn or plain last line) is require_intact's question, not this one's."""
    log = Path(path)
    missing = [
        f.name
        for f, what, flags in (
            (log, "the log", os.O_RDWR | os.O_APPEND),  # as append opens it, less O_CREAT
            (Path(f"{log}.lock"), "its lock file", os.O_RDWR),  # as filelock opens it, less O_CREAT, O_TRUNC
        )
        if not _opens(log, f, what, flags)
    ]
    where, new_dirs = log, 0
    if missing:
        where = log.parent
        while not where.exists():  # append makes the missing directories, in the nearest one that exists
            where, new_dirs = where.parent, new_dirs + 1
        if _libc.access(os.fsencode(where), os.W_OK | os.X_OK) != 0:
            subdirs = " (and the directories below it)" if new_dirs else ""
            expected = f"to create {' and '.join(missing)} in directory {where}{subdirs}"
            raise _refuse(log, where, expected, ctypes.get_errno())
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < FREE_SPACE_MARGIN:
        expected = f"at least {FREE_SPACE_MARGIN // 1024} KiB free on its file system for the entry"
        raise _refuse(log, where, expected, errno.ENOSPC, f"{free} bytes free: ")
    if missing and st.f_files and st.f_favail < len(missing) + new_dirs:
        expected = f"{len(missing) + new_dirs} free inodes for the files and directories to create"
        raise _refuse(log, where, expected, errno.ENOSPC, f"{st.f_favail} free inodes: ")
