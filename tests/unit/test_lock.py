"""The operator lock and Pulumi's file-backend lock, with real processes, real flock and real lock files."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchml_infra.lock import (
    UNKNOWN_HOLDER,
    EngineLock,
    Holder,
    LockHeld,
    current_holder,
    engine_locks,
    holder_gone,
    operator_lock,
    this_process,
)

REPO = Path(__file__).resolve().parents[2]
ALICE = Holder(
    "alice", "host1", 4242, "fetchml-infra deploy --stack staging --image sha-1a2b3c4", "2026-11-27T17:40:02Z"
)
BOB = Holder("bob", "host2", 77, "fetchml-infra rollback --stack staging", "2026-11-27T17:41:00Z")
ALICE_TEXT = (
    "alice on host1 (pid 4242) running `fetchml-infra deploy --stack staging --image sha-1a2b3c4` "
    "since 2026-11-27T17:40:02Z"
)

# A holder in its own process: takes the lock, says so on stdout, holds it for argv[3] seconds.
HOLD = """
import sys, time
from pathlib import Path
from fetchml_infra.lock import operator_lock, this_process
with operator_lock(Path(sys.argv[1]), "staging", this_process(sys.argv[2], "carol")):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""

# A holder that starts a child passing on every inheritable fd (as a careless spawn would), then holds on.
SPAWN = """
import subprocess, sys, time
from pathlib import Path
from fetchml_infra.lock import operator_lock, this_process
with operator_lock(Path(sys.argv[1]), "staging", this_process("fetchml-infra deploy", "carol")):
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    print(child.pid, flush=True)
    time.sleep(60)
"""

# A racer: waits for the go file, then tries once (wait=0); the winner holds long enough for the loser to try.
RACE = """
import sys, time
from pathlib import Path
from fetchml_infra.lock import LockHeld, operator_lock, this_process
lock, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    with operator_lock(lock, "staging", this_process("race", "racer")):
        print("won", flush=True)
        time.sleep(1.5)
except LockHeld:
    print("refused", flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding tmp_path/staging.lock for 60 s (killed at the end of the test)."""
    path = tmp_path / "locks" / "staging.lock"
    proc = _python(HOLD, str(path), "fetchml-infra deploy --stack staging --image sha-9c0ffee", "60")
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc, path
    proc.kill()
    proc.wait()


def test_second_taker_is_refused_at_once_with_the_holder_named(tmp_path: Path) -> None:
    path = tmp_path / "state" / "locks" / "staging.lock"
    with operator_lock(path, "staging", ALICE) as held:
        assert held == ALICE
        start = time.monotonic()
        with pytest.raises(LockHeld) as refused, operator_lock(path, "staging", BOB):
            pytest.fail("the second taker got the lock")
        assert time.monotonic() - start < 0.5
    assert refused.value.holder == ALICE and refused.value.stack == "staging"
    assert str(refused.value) == (
        f"stack 'staging' is held by {ALICE_TEXT}; nothing was changed. Wait for it to finish, or add --wait SECONDS"
    )


def test_holder_in_another_process_is_named_and_current_holder_follows_it(
    holder_process: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = holder_process
    seen = current_holder(path)
    assert seen is not None
    assert (seen.actor, seen.host, seen.pid) == ("carol", socket.gethostname(), proc.pid)
    assert seen.command == "fetchml-infra deploy --stack staging --image sha-9c0ffee"
    assert seen.since.endswith("Z") and len(seen.since) == len("2026-11-27T17:40:02Z")
    with pytest.raises(LockHeld) as refused, operator_lock(path, "staging", BOB):
        pass
    assert f"held by carol on {socket.gethostname()} (pid {proc.pid}) running `fetchml-infra deploy" in str(
        refused.value
    )
    assert refused.value.holder == seen


def test_current_holder_is_none_without_a_file_and_after_release(tmp_path: Path) -> None:
    path = tmp_path / "staging.lock"
    assert current_holder(path) is None
    me = this_process("fetchml-infra recover --stack staging", "dave")
    with operator_lock(path, "staging", me):
        assert current_holder(path) == me
        assert json.loads(path.read_text()) == {
            "actor": "dave",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": "fetchml-infra recover --stack staging",
            "since": me.since,
        }
    assert current_holder(path) is None
    assert path.read_bytes() == b""


def test_wait_succeeds_when_the_holder_releases_in_time(tmp_path: Path) -> None:
    path = tmp_path / "staging.lock"
    taken, release = threading.Event(), threading.Event()

    def first() -> None:
        with operator_lock(path, "staging", ALICE):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert taken.wait(10)
    threading.Timer(0.5, release.set).start()
    start = time.monotonic()
    with operator_lock(path, "staging", BOB, wait=5):
        waited = time.monotonic() - start
        assert current_holder(path) == BOB
    thread.join()
    assert 0.4 < waited < 2


def test_wait_fails_after_the_deadline(holder_process: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder_process
    start = time.monotonic()
    with pytest.raises(LockHeld) as refused, operator_lock(path, "staging", BOB, wait=0.6):
        pass
    assert 0.6 <= time.monotonic() - start < 2
    assert f"(pid {proc.pid})" in str(refused.value)
    assert "(still, after waiting 0.6s); nothing was changed." in str(refused.value)


def test_a_holder_killed_with_sigkill_releases_the_lock(holder_process: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder_process
    assert current_holder(path) is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert b'"actor": "carol"' in path.read_bytes()  # its record stays behind ...
    assert current_holder(path) is None  # ... but is not believed: the lock is free
    start = time.monotonic()
    with operator_lock(path, "staging", BOB):
        assert time.monotonic() - start < 0.5
        assert current_holder(path) == BOB


def test_programs_started_under_the_lock_do_not_keep_it_after_a_sigkill(tmp_path: Path) -> None:
    """fetchml-infra killed with SIGKILL while its pulumi child runs on: the child must not hold the lock."""
    path = tmp_path / "staging.lock"
    parent = _python(SPAWN, str(path))
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline().split()[0])
    try:
        parent.kill()
        parent.wait()
        os.kill(child_pid, 0)  # the child is still running ...
        with operator_lock(path, "staging", BOB):  # ... and does not hold the lock
            assert current_holder(path) == BOB
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_held_before_the_record_is_written(tmp_path: Path) -> None:
    path = tmp_path / "staging.lock"
    path.touch()
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a taker between flock and writing its record
        assert current_holder(path) == UNKNOWN_HOLDER
        assert UNKNOWN_HOLDER.describe() == "another process (no holder record yet)"
        with pytest.raises(LockHeld) as refused, operator_lock(path, "staging", BOB):
            pass
        assert refused.value.holder is None
        assert str(refused.value).startswith(
            "stack 'staging' is held by another process (no holder record yet); nothing was changed."
        )
    finally:
        os.close(fd)


def test_two_processes_racing_exactly_one_wins(tmp_path: Path) -> None:
    go = tmp_path / "go"
    rounds = [_python(RACE, str(tmp_path / f"round{i}.lock"), str(go)) for i in range(20)]
    pairs = [(a, _python(RACE, str(tmp_path / f"round{i}.lock"), str(go))) for i, a in enumerate(rounds)]
    time.sleep(1.0)  # let all 40 interpreters start and spin on the go file
    go.touch()
    for i, (a, b) in enumerate(pairs):
        outs = sorted(p.communicate(timeout=60)[0].strip() for p in (a, b))
        assert outs == ["refused", "won"], f"round {i}: {outs}"


# Pulumi's file-backend lock, written as pulumi does: json.Marshal of lockContent (compact, this field order).
def _engine_lock(folder: Path, pid: int, hostname: str | None = None) -> Path:
    content = {
        "pid": pid,
        "username": "root",
        "hostname": socket.gethostname() if hostname is None else hostname,
        "timestamp": "2026-11-27T17:40:02.123456789+01:00",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4()}.json"
    path.write_text(json.dumps(content, separators=(",", ":")))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def pulumi_looking() -> Iterator[int]:
    """A live process whose cmdline is `pulumi 30` (sleep exec'd under argv[0] pulumi)."""
    proc = subprocess.Popen(["bash", "-c", "exec -a pulumi sleep 30"])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 5
    while not cmdline.read_bytes().startswith(b"pulumi\0") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cmdline.read_bytes() == b"pulumi\x0030\x00"
    yield proc.pid
    proc.kill()
    proc.wait()


def test_engine_locks_found_in_both_layouts(tmp_path: Path) -> None:
    locks = tmp_path / ".pulumi" / "locks"
    legacy = _engine_lock(locks / "staging", 1234)
    scoped = _engine_lock(locks / "organization" / "fetchml" / "staging", 5678, "ci-runner")
    _engine_lock(locks / "organization" / "fetchml" / "prod", 999)
    _engine_lock(locks / "prod", 998)
    found = engine_locks(tmp_path, "staging")
    assert found == [
        EngineLock(legacy, 1234, "root", socket.gethostname(), "2026-11-27T17:40:02.123456789+01:00"),
        EngineLock(scoped, 5678, "root", "ci-runner", "2026-11-27T17:40:02.123456789+01:00"),
    ]
    assert found[1].describe() == "pulumi (pid 5678) of root on ci-runner since 2026-11-27T17:40:02.123456789+01:00"
    assert [x.pid for x in engine_locks(tmp_path, "organization/fetchml/staging")] == [5678]
    assert engine_locks(tmp_path, "dev") == []
    assert engine_locks(tmp_path / "nowhere", "staging") == []


def test_dead_pid_on_this_host_is_gone(tmp_path: Path) -> None:
    _engine_lock(tmp_path / ".pulumi/locks/staging", _dead_pid())
    [lock] = engine_locks(tmp_path, "staging")
    assert holder_gone(lock) is True


def test_live_pulumi_is_not_gone(tmp_path: Path, pulumi_looking: int) -> None:
    _engine_lock(tmp_path / ".pulumi/locks/organization/fetchml/staging", pulumi_looking)
    [lock] = engine_locks(tmp_path, "staging")
    assert holder_gone(lock) is False


def test_pid_reused_by_another_program_is_gone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        _engine_lock(tmp_path / ".pulumi/locks/staging", other.pid)
        [lock] = engine_locks(tmp_path, "staging")
        assert holder_gone(lock) is True
    finally:
        other.kill()
        other.wait()


def test_another_host_is_never_provably_gone(tmp_path: Path) -> None:
    _engine_lock(tmp_path / ".pulumi/locks/staging", _dead_pid(), hostname="other-host")
    [lock] = engine_locks(tmp_path, "staging")
    assert holder_gone(lock) is False
    assert holder_gone(lock, this_host="other-host") is True


def test_garbled_lock_is_reported_and_not_gone(tmp_path: Path) -> None:
    folder = tmp_path / ".pulumi/locks/staging"
    folder.mkdir(parents=True)
    (folder / "a.json").write_bytes(b'{"pid":12')
    (folder / "b.json").write_text('{"pid":"12","username":"root","hostname":"h","timestamp":"t"}')
    found = engine_locks(tmp_path, "staging")
    assert [(x.path.name, x.pid, x.username, x.hostname, x.timestamp) for x in found] == [
        ("a.json", 0, "unknown", "unknown", "unknown"),
        ("b.json", 0, "unknown", "unknown", "unknown"),
    ]
    assert found[0].describe() == f"a pulumi lock file that cannot be read ({folder / 'a.json'})"
    assert not any(holder_gone(x) for x in found)
