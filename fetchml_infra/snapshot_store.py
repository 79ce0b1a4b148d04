"""Taking, listing, reading and deleting snapshots (fetchml_infra.snapshots) in the stack's own MinIO.

Redis is read with `redis-cli --rdb` (a replica's full sync: the server forks, the queue keeps serving) and
PostgreSQL with `pg_dump -Fc`, both run inside their containers with `docker exec`, so no password and no
extra port is needed; the artifacts bucket is listed, not copied. MinIO is reached with its root key at the
stack's published port, like the demo's seed.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, BinaryIO, cast

import urllib3
from minio import Minio
from minio.error import S3Error

from fetchml_infra import audit, schema, snapshots
from fetchml_infra.app_access import ARTIFACTS_BUCKET
from fetchml_infra.config import StackConfig
from fetchml_infra.host import HostError, data_container, run_docker
from fetchml_infra.snapshots import BUCKET, MANIFEST, PARTS, Manifest, Part

_FAILURES = (S3Error, urllib3.exceptions.HTTPError, OSError, HostError, subprocess.SubprocessError)
PART_SIZE = 16 * 1024 * 1024


class SnapshotError(RuntimeError):
    """A snapshot could not be taken, found or read; the message names which and why."""


def redis_container(cfg: StackConfig) -> str:
    return data_container(f"{cfg.name_prefix}-redis")


def client(cfg: StackConfig) -> Minio:
    return Minio(
        f"{cfg.published_host}:{cfg.minio_host_port}",
        cfg.minio_root_user.value,
        cfg.minio_root_password.value,
        secure=False,
        http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=120), retries=False),
    )


def running(name: str) -> bool:
    out = run_docker("container", "inspect", "-f", "{{.State.Running}}", name, ignore="No such container")
    return out.strip() == "true"


def redis_rdb(name: str) -> bytes:
    """The RDB a replica would get. Written to stdout, redis-cli cannot cut off the 40-byte end-of-transfer
    marker it appends, so the file is cut to the length it reports. A replica's sync waits
    repl-diskless-sync-delay (5 s by default) for other replicas to join; the stack has none, so no wait."""
    run_docker("exec", name, "redis-cli", "CONFIG", "SET", "repl-diskless-sync-delay", "0")
    done = subprocess.run(["docker", "exec", name, "redis-cli", "--rdb", "-"], capture_output=True, timeout=600)
    said = done.stderr.decode(errors="replace")
    length = re.search(r"after ([0-9]+) bytes", said)
    if done.returncode != 0 or length is None or not done.stdout.startswith(b"REDIS"):
        raise SnapshotError(f"redis-cli --rdb in {name} failed: {audit.clean_value(said.strip())[-300:]}")
    return done.stdout[: int(length.group(1))]


@contextmanager
def pg_dump(name: str) -> Iterator[IO[bytes]]:
    """`pg_dump -Fc` of the database, as a stream (a large database is not held in memory)."""
    cmd = ["docker", "exec", name, "pg_dump", "-U", "postgres", "-d", schema.DATABASE, "-Fc"]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe nobody reads until the end
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            yield proc.stdout
        except BaseException:
            proc.kill()  # the upload failed: its error is the one to report
            raise
        finally:
            proc.stdout.close()
        if proc.wait(timeout=600) != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
            raise SnapshotError(f"pg_dump in {name} failed: {audit.clean_value(said)[-300:]}")


class _Hashing(io.RawIOBase):
    """A reader that counts and hashes what passes through it (for a streamed part's manifest line)."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source, self.sha, self.count = source, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha.update(data)
        self.count += len(data)
        return data


def _put(mc: Minio, key: str, stream: IO[bytes]) -> Part:
    hashing = _Hashing(stream)
    mc.put_object(BUCKET, key, cast(BinaryIO, hashing), length=-1, part_size=PART_SIZE)
    return Part(key, hashing.count, hashing.sha.hexdigest())


def take(cfg: StackConfig, log: str, *, image: str, target: str, action: str) -> Manifest | None:
    """Snapshot the data before a move of ``cfg.stack`` from ``image`` to ``target``. None when the stack has no
    data service running yet (its first deploy). SnapshotError when a part cannot be taken or stored."""
    try:
        has_redis, has_db = running(redis_container(cfg)), running(data_container(schema.container(cfg.name_prefix)))
        if not (has_redis or has_db):
            return None
        head, length = audit.head(log)
        version = schema.live_version(cfg.name_prefix) if has_db else None
        mc = client(cfg)
        if not mc.bucket_exists(BUCKET):
            mc.make_bucket(BUCKET)
        taken = {m.id for m in listed(cfg, mc)}
        sid = snapshots.new_id(datetime.now(UTC), length + 1, taken)
        folder = snapshots.folder(cfg.stack, sid)
        parts: dict[str, Part] = {}
        if has_redis:
            parts["redis"] = _put(mc, folder + PARTS["redis"], io.BytesIO(redis_rdb(redis_container(cfg))))
        if has_db:
            with pg_dump(data_container(schema.container(cfg.name_prefix))) as dump:
                parts["db"] = _put(mc, folder + PARTS["db"], dump)
        objects = [(o.object_name, o.size, o.etag) for o in mc.list_objects(ARTIFACTS_BUCKET, recursive=True)]
        parts["artifacts"] = _put(mc, folder + PARTS["artifacts"], io.BytesIO(snapshots.artifacts_listing(objects)))
        manifest = Manifest(
            id=sid,
            stack=cfg.stack,
            time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            before_entry=length + 1,
            audit_head=head or "-",
            image=image,
            target=target,
            action=action,
            parts=parts,
            schema=version,
        )
        body = manifest.to_json()
        mc.put_object(BUCKET, folder + MANIFEST, io.BytesIO(body), len(body))  # last: now it is a snapshot
        return manifest
    except (*_FAILURES, audit.AuditError, schema.SchemaError) as exc:
        raise SnapshotError(f"the snapshot of stack '{cfg.stack}' could not be taken: {exc}") from exc


def listed(cfg: StackConfig, mc: Minio | None = None) -> list[Manifest]:
    """The stack's complete snapshots, oldest first."""
    mc = mc or client(cfg)
    try:
        if not mc.bucket_exists(BUCKET):
            return []
        found = []
        for o in mc.list_objects(BUCKET, prefix=f"{cfg.stack}/", recursive=True):
            if o.object_name and o.object_name.endswith(f"/{MANIFEST}"):
                try:
                    found.append(Manifest.from_json(_read(mc, o.object_name)))
                except (ValueError, TypeError, KeyError):  # not written by us: not a snapshot, and no reason to fail
                    continue
    except _FAILURES as exc:
        raise SnapshotError(f"the snapshots of stack '{cfg.stack}' could not be listed: {exc}") from exc
    return sorted(found, key=lambda m: m.id)


def load(cfg: StackConfig, snapshot: str) -> Manifest:
    found = {m.id: m for m in listed(cfg)}
    if snapshot not in found:
        known = ", ".join(list(found)[-5:]) or "none yet"
        raise SnapshotError(
            f"--snapshot: stack '{cfg.stack}' has no snapshot {snapshot!r} (newest: {known}); "
            f"list them with `fetchml-infra snapshots --stack {cfg.stack}`"
        )
    return found[snapshot]


def read_part(cfg: StackConfig, manifest: Manifest, name: str) -> bytes:
    """A part's bytes, checked against the manifest's sha256 before anyone restores from them."""
    if name not in manifest.parts:
        raise SnapshotError(f"snapshot {manifest.id} has no {name} part (it has {', '.join(manifest.parts)})")
    p = manifest.parts[name]
    try:
        data = _read(client(cfg), p.key)
    except _FAILURES as exc:
        raise SnapshotError(f"snapshot {manifest.id}: {p.key} could not be read: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != p.sha256 or len(data) != p.bytes:
        raise SnapshotError(f"snapshot {manifest.id}: {p.key} does not match its manifest (size or sha256)")
    return data


def delete(cfg: StackConfig, snapshot: str) -> None:
    mc = client(cfg)
    try:
        keys = [
            o.object_name for o in mc.list_objects(BUCKET, prefix=snapshots.folder(cfg.stack, snapshot), recursive=True)
        ]
        # The manifest first: a snapshot cut off mid-delete is then incomplete, not a damaged complete one.
        for key in sorted((k for k in keys if k), key=lambda k: not k.endswith(MANIFEST)):
            mc.remove_object(BUCKET, key)
    except _FAILURES as exc:
        raise SnapshotError(f"snapshot {snapshot} could not be deleted: {exc}") from exc


def _read(mc: Minio, key: str) -> bytes:
    response = mc.get_object(BUCKET, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()
