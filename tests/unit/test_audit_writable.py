"""require_appendable: refuses exactly when an append to the same log would fail, and changes nothing.

The faults are real ones (chattr, a read-only bind mount, a full tmpfs), so these tests need root. Every
attribute and mount is undone at teardown, even after a failed assertion: an immutable file left in pytest's
temp dir would break later runs.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fetchml_infra import audit
from fetchml_infra.audit import FREE_SPACE_MARGIN, AuditError, make_entry, require_appendable


@pytest.fixture(autouse=True)
def _root() -> None:
    """chattr and mount make the faults; without root these tests fail loudly rather than skip."""
    if os.geteuid() != 0:
        pytest.fail("tests/unit/test_audit_writable.py needs root (chattr, mount); run it as root, as CI does")


T = datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
KW: dict[str, Any] = {
    "action": "deploy",
    "outcome": "success",
    "from_image": "sha-a",
    "to_image": "sha-b",
    "actor": "ci",
}


@pytest.fixture
def undo() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def chattr(undo: ExitStack, path: Path, flag: str) -> None:
    sh("chattr", f"+{flag}", str(path))
    undo.callback(sh, "chattr", f"-{flag}", str(path))


def mount(undo: ExitStack, target: Path, *args: str) -> Path:
    target.mkdir(exist_ok=True)
    sh("mount", *args, str(target))
    undo.callback(sh, "umount", str(target))
    return target


def read_only(undo: ExitStack, src: Path) -> Path:
    """``src`` bind-mounted read-only at ``<src>-ro``."""
    ro = mount(undo, src.with_name(src.name + "-ro"), "--bind", str(src))
    sh("mount", "-o", "remount,bind,ro", str(ro))
    return ro


def write_log(log: Path, n: int = 3) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        audit.append(log, **KW, reason=f"r{i}", stack="prod", time=T)


def write_aligned_log(log: Path, block: int) -> None:
    """A valid chained log (no lock file) whose size is a multiple of ``block``: no slack in its last block."""
    first = make_entry(audit.ZERO_HASH, **KW, reason="r", stack="prod", time=T).render().encode() + b"\n"
    short = len(make_entry(audit.ZERO_HASH, **KW, reason="x", stack="prod", time=T).render()) + 1
    pad = -(len(first) + short) % block
    last = make_entry(audit.Entry.parse(first.decode()).hash, **KW, reason="x" * (1 + pad), stack="prod", time=T)
    log.write_bytes(first + last.render().encode() + b"\n")
    assert log.stat().st_size % block == 0 and audit.verify(log).ok


def full_tmpfs(undo: ExitStack, where: Path) -> Path:
    """A 256 KiB tmpfs, filled to the last block (the caller's files go in first)."""
    return mount(undo, where, "-t", "tmpfs", "-o", "size=256k", "tmpfs")


def fill(fs: Path) -> None:
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0


# -- the cases: each builds a log path in a state; the words a refusal must contain (None: it passes) ------


def ok_existing(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "a.log")
    return tmp / "a.log"


def ok_missing(tmp: Path, undo: ExitStack) -> Path:
    return tmp / "a.log"  # the first deploy creates it


def ok_missing_directories(tmp: Path, undo: ExitStack) -> Path:
    return tmp / "state" / "audit" / "a.log"


def ok_append_only_log(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "a.log")
    chattr(undo, tmp / "a.log", "a")  # O_APPEND is all append needs
    return tmp / "a.log"


def ok_immutable_dir_with_log_and_lock(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "d" / "a.log")
    chattr(undo, tmp / "d", "i")  # nothing to create in it
    return tmp / "d" / "a.log"


def immutable_log(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "a.log")
    chattr(undo, tmp / "a.log", "i")
    return tmp / "a.log"


def immutable_lock(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "a.log")
    chattr(undo, tmp / "a.log.lock", "i")
    return tmp / "a.log"


def append_only_lock(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "a.log")
    chattr(undo, tmp / "a.log.lock", "a")  # filelock opens it O_RDWR|O_TRUNC, which +a forbids
    return tmp / "a.log"


def missing_lock_in_immutable_dir(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "d" / "a.log")
    (tmp / "d" / "a.log.lock").unlink()
    chattr(undo, tmp / "d", "i")
    return tmp / "d" / "a.log"


def missing_log_in_immutable_dir(tmp: Path, undo: ExitStack) -> Path:
    (tmp / "d").mkdir()
    chattr(undo, tmp / "d", "i")
    return tmp / "d" / "a.log"


def missing_directory_in_immutable_dir(tmp: Path, undo: ExitStack) -> Path:
    (tmp / "d").mkdir()
    chattr(undo, tmp / "d", "i")
    return tmp / "d" / "audit" / "a.log"


def read_only_fs(tmp: Path, undo: ExitStack) -> Path:
    write_log(tmp / "d" / "a.log")
    return read_only(undo, tmp / "d") / "a.log"


def read_only_fs_missing_log(tmp: Path, undo: ExitStack) -> Path:
    (tmp / "d").mkdir()
    return read_only(undo, tmp / "d") / "a.log"


def full_fs(tmp: Path, undo: ExitStack) -> Path:
    fs = full_tmpfs(undo, tmp / "fs")
    write_aligned_log(fs / "a.log", os.statvfs(fs).f_frsize)
    (fs / "a.log.lock").touch()
    fill(fs)
    return fs / "a.log"


def full_fs_missing_log(tmp: Path, undo: ExitStack) -> Path:
    fill(full_tmpfs(undo, tmp / "fs"))
    return tmp / "fs" / "a.log"


def log_is_a_directory(tmp: Path, undo: ExitStack) -> Path:
    (tmp / "a.log").mkdir()
    return tmp / "a.log"


def parent_is_a_file(tmp: Path, undo: ExitStack) -> Path:
    (tmp / "state").write_text("")
    return tmp / "state" / "a.log"


EPERM = ["Operation not permitted (EPERM)", "lsattr -d"]
EROFS = ["Read-only file system (EROFS)", "remount it read-write", "mount -o remount,rw"]
ENOSPC = ["No space left on device (ENOSPC)", f"at least {FREE_SPACE_MARGIN // 1024} KiB free", "df -h"]
CASES: dict[Callable[[Path, ExitStack], Path], list[str] | None] = {
    ok_existing: None,
    ok_missing: None,
    ok_missing_directories: None,
    ok_append_only_log: None,
    ok_immutable_dir_with_log_and_lock: None,
    immutable_log: [*EPERM, "open the log for writing", "chattr -i ", "a.log:"],
    immutable_lock: [*EPERM, "open its lock file", "chattr -i -a ", "a.log.lock:"],
    append_only_lock: [*EPERM, "open its lock file", "chattr -i -a "],
    missing_lock_in_immutable_dir: [*EPERM, "to create a.log.lock in directory", "chattr -i "],
    missing_log_in_immutable_dir: [*EPERM, "to create a.log and a.log.lock in directory", "chattr -i "],
    missing_directory_in_immutable_dir: [*EPERM, "(and the directories below it)"],
    read_only_fs: [*EROFS, "open the log for writing"],
    read_only_fs_missing_log: [*EROFS, "to create a.log and a.log.lock"],
    full_fs: [*ENOSPC, "0 bytes free"],
    full_fs_missing_log: [*ENOSPC, "0 bytes free"],
    log_is_a_directory: ["Is a directory (EISDIR)", "point the audit log (auditLog, --log) at a file"],
    parent_is_a_file: ["Not a directory (ENOTDIR)", "fix the audit log path"],
}


def snapshot(log: Path) -> dict[str, object]:
    """Everything the check must leave alone: the log's bytes and times, the lock's, the directory's names."""
    seen: dict[str, object] = {}
    for p in (log, Path(f"{log}.lock"), log.parent, log.parent.parent):
        try:
            st = p.stat()
        except OSError as exc:
            seen[str(p)] = exc.errno
            continue
        seen[str(p)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        seen[f"{p} content"] = sorted(os.listdir(p)) if p.is_dir() else p.read_bytes()
    return seen


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_refuses_exactly_when_append_fails_and_changes_nothing(
    case: Callable[[Path, ExitStack], Path], tmp_path: Path, undo: ExitStack
) -> None:
    log = case(tmp_path, undo)
    before = snapshot(log)
    try:
        require_appendable(log)
        refused = None
    except AuditError as exc:
        refused = str(exc)
    assert snapshot(log) == before  # nothing written, created, truncated or touched, refused or not

    lines_before = audit.verify(log).length if log.is_file() else 0
    try:
        audit.append(log, **KW, reason="after-check", stack="prod", time=T)
        append_failed = None
    except (AuditError, OSError) as exc:
        append_failed = exc
    assert (refused is not None) == (append_failed is not None), (refused, append_failed)
    if append_failed is None:  # the log still verifies, one entry longer
        assert audit.verify(log).ok and audit.verify(log).length == lines_before + 1

    words = CASES[case]
    assert (refused is not None) == (words is not None)
    if refused is not None and words is not None:
        assert refused.startswith(f"audit log {log}: expected ")
        assert "Nothing was changed." in refused
        for w in words:
            assert w in refused, (w, refused)


def test_less_than_the_margin_free_is_refused_even_if_one_entry_might_fit(tmp_path: Path, undo: ExitStack) -> None:
    fs = full_tmpfs(undo, tmp_path / "fs")
    write_log(fs / "a.log")
    (fs / "filler").write_bytes(b"\0" * (os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize - 8192))
    before = snapshot(fs / "a.log")
    with pytest.raises(AuditError, match=r"8192 bytes free: No space left on device .*Nothing was changed"):
        require_appendable(fs / "a.log")
    assert snapshot(fs / "a.log") == before


def test_a_passing_check_leaves_the_log_byte_for_byte_and_its_mtime(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    write_log(log, 5)
    data, st = log.read_bytes(), log.stat()
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # an mtime a touch would visibly move
    mtime = log.stat().st_mtime_ns
    for _ in range(3):
        require_appendable(log)
    assert log.read_bytes() == data and log.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(tmp_path)) == ["a.log", "a.log.lock"]


def test_a_missing_log_passes_without_creating_anything(tmp_path: Path) -> None:
    require_appendable(tmp_path / "state" / "audit" / "a.log")
    require_appendable(str(tmp_path / "b.log"))
    assert os.listdir(tmp_path) == []
