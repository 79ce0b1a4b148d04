"""Putting a snapshot's data back into the running data services: the edges `fetchml-infra restore` uses.

Redis: the live server becomes, for a moment, a replica of a throw-away Redis loaded with the snapshot's RDB.
A full sync replaces its data and rewrites its append-only file, so the Redis container, its volume and its
settings stay as they are (no file is edited under a running server).

PostgreSQL: the dump is restored into a new database beside the live one, which is swapped in by two renames
only once the restore has succeeded; a failed restore leaves the live database untouched.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fetchml_infra import schema
from fetchml_infra.config import StackConfig
from fetchml_infra.host import HostError, container_address, data_container, run_docker


class RestoreError(RuntimeError):
    """A part could not be restored; the message says which step and what the data service said."""


def _info(name: str) -> dict[str, str]:
    out = run_docker("exec", name, "redis-cli", "INFO", "persistence", "replication")
    return dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RestoreError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.25)


def redis(cfg: StackConfig, rdb: bytes, timeout: float = 120.0) -> None:
    """Replace the live Redis data with ``rdb``."""
    live, source = data_container(f"{cfg.name_prefix}-redis"), f"{cfg.name_prefix}-redis-restore"
    run_docker("rm", "-f", source, ignore="No such container")
    try:
        run_docker(
            "create", "--name", source, "--network", f"{cfg.name_prefix}-net", cfg.redis_image,
            "/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data",
            "--appendonly", "no", "--repl-diskless-sync-delay", "0",
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "dump.rdb").write_bytes(rdb)
            run_docker("cp", str(Path(tmp) / "dump.rdb"), f"{source}:/data/dump.rdb")
        run_docker("start", source)
        _wait("the snapshot's Redis answering", lambda: _pong(source), 30)
        address = container_address(source)
        if not address:
            raise RestoreError(f"{source} has no address on the stack network")
        run_docker("exec", live, "redis-cli", "REPLICAOF", address, "6379")
        try:
            _wait(
                "the full sync from the snapshot",
                lambda: _has(live, master_link_status="up", master_sync_in_progress="0"),
                timeout,
            )
        finally:
            run_docker("exec", live, "redis-cli", "REPLICAOF", "NO", "ONE")
        _wait(
            "the append-only file rewrite",
            lambda: _has(live, aof_rewrite_in_progress="0", aof_rewrite_scheduled="0"),
            timeout,
        )
    except HostError as exc:
        raise RestoreError(f"restoring Redis failed: {exc}") from exc
    finally:
        run_docker("rm", "-f", source, ignore="No such container")


def _has(name: str, **wanted: str) -> bool:
    info = _info(name)
    return all(info.get(k) == v for k, v in wanted.items())


def _pong(name: str) -> bool:
    try:
        return run_docker("exec", name, "redis-cli", "PING").strip() == "PONG"
    except HostError:
        return False


def database(cfg: StackConfig, dump: bytes, say: Callable[[str], None], timeout: float = 600.0) -> None:
    """Replace the live database with the one in ``dump`` (``pg_dump -Fc``); the app must be stopped."""
    name, db = data_container(schema.container(cfg.name_prefix)), schema.DATABASE
    fresh, old = f"{db}_restoring", f"{db}_before_restore"

    def admin(sql: str) -> str:
        return run_docker(
            "exec", name, "psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-tAc", sql
        ).strip()  # fmt: skip

    try:
        if admin(f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") != "1":
            raise RestoreError(f"the live database {db} is missing in {name}; restore refused, nothing was changed")
        admin(f"DROP DATABASE IF EXISTS {fresh}")  # a restore cut short before its swap left it
        admin(f"DROP DATABASE IF EXISTS {old}")  # an earlier restore's, kept when its last drop failed
        admin(f"CREATE DATABASE {fresh} TEMPLATE template0")
        done = subprocess.run(
            ["docker", "exec", "-i", name, "pg_restore", "-U", "postgres", "-d", fresh, "--single-transaction",
             "--exit-on-error", "--no-owner"],
            input=dump, capture_output=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            admin(f"DROP DATABASE IF EXISTS {fresh}")
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise RestoreError(f"pg_restore failed, the live database is untouched: {(said or ['no output'])[-1]}")
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        # One transaction: both renames or neither, so there is always a database called fetchml.
        admin(f"BEGIN; ALTER DATABASE {db} RENAME TO {old}; ALTER DATABASE {fresh} RENAME TO {db}; COMMIT;")
    except (HostError, subprocess.SubprocessError) as exc:
        raise RestoreError(f"restoring the database failed: {exc}") from exc
    try:
        admin(f"DROP DATABASE {old}")  # the safety snapshot taken before the restore holds it
    except HostError as exc:
        say(f"  warning: the replaced database is kept as {old} ({exc}); the next restore drops it")
