"""The write-once sink: an S3 bucket with Object Lock that holds every line of a stack's chain, and a signed
checkpoint after each append. The thin S3 edge (boto3); what to send and what the findings are is decided in
``shipping`` and ``findings``.

Layout: ``entries/<stack>/<index:012d>`` holds line ``index`` (0-based) of the local log, its exact bytes with
the newline; ``checkpoints/<stack>/<length:012d>`` a signed note of (origin, length, head). Every object is
written create-only (``If-None-Match: *``), with COMPLIANCE retention: nobody, the bucket's owner included, can
delete or overwrite it before the retention ends. A second writer at an index gets 412 and re-syncs.

Credentials come from boto3's usual places (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile): give the
deploy host a key that can put and read, never delete or bypass retention.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fetchml_infra.audit.findings import SinkEntry, SinkView
from fetchml_infra.audit.target import SinkError, Taken, Target

_PARALLEL = 16  # concurrent reads when check-sink fetches every object


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class Sink:
    """One stack's entries and checkpoints in the sink bucket."""

    def __init__(self, target: Target, stack: str) -> None:
        self.target, self.stack = target, stack
        self.origin = f"{target.bucket}/{stack}"
        session = boto3.session.Session()  # reads the environment and profiles once
        self._s3: Any = session.client(
            "s3",
            endpoint_url=target.endpoint,
            region_name=session.region_name or "us-east-1",
            config=Config(
                connect_timeout=3,
                read_timeout=15,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
                max_pool_connections=_PARALLEL,
            ),
        )

    def key(self, index: int) -> str:
        return f"entries/{self.stack}/{index:012d}"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.target.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if _status(exc) == 412 or code == "PreconditionFailed":
                raise Taken(kwargs.get("Key", "")) from None
            if code == "NoSuchKey" or (_status(exc) == 404 and code != "NoSuchBucket"):
                raise KeyError(kwargs.get("Key", "")) from None
            raise SinkError(f"audit sink {self.target.url()}: {what} failed: {code or _status(exc)}: {exc}") from None
        except (BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()} is unreachable ({what}): {exc}") from None

    # -- writing ---------------------------------------------------------------------------------------
    def _put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        until = datetime.now(UTC) + timedelta(days=self.target.retention_days)
        self._call(
            f"writing {key}",
            self._s3.put_object,
            Key=key,
            Body=body,
            IfNoneMatch="*",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
            Metadata=metadata,
        )

    def put_entry(self, index: int, line: bytes) -> None:
        """Create line ``index``; Taken if another writer was first."""
        meta = {"index": str(index), "stack": self.stack, "sha256": hashlib.sha256(line).hexdigest()}
        self._put(self.key(index), line, meta)

    def put_checkpoint(self, length: int, note: str) -> None:
        self._put(
            f"checkpoints/{self.stack}/{length:012d}", note.encode(), {"length": str(length), "stack": self.stack}
        )

    def put_incident(self, sha256: str, text: bytes) -> None:
        """An incident report, content-addressed: one already there under its hash is the same report."""
        with contextlib.suppress(Taken):
            self._put(f"incidents/{self.stack}/{sha256}", text, {"stack": self.stack, "sha256": sha256})

    # -- reading ---------------------------------------------------------------------------------------
    def sha256_at(self, index: int) -> str | None:
        """The sha256 of line ``index`` as its metadata records it, or None when the sink lacks it."""
        try:
            head = self._call(f"reading {self.key(index)}", self._s3.head_object, Key=self.key(index))
        except KeyError:
            return None
        return str(head.get("Metadata", {}).get("sha256", ""))

    def _keys(self, prefix: str, after: str = "") -> Iterator[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.target.bucket, Prefix=prefix, StartAfter=after
        )
        try:
            for page in pages:
                yield from (o["Key"] for o in page.get("Contents", []))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()}: listing {prefix} failed: {exc}") from None

    def body(self, key: str, version: str | None = None) -> bytes:
        extra = {"VersionId": version} if version else {}
        return bytes(self._call(f"reading {key}", self._s3.get_object, Key=key, **extra)["Body"].read())

    def lines_from(self, index: int) -> list[bytes]:
        """The sink's lines at ``index`` and after, as long as they are contiguous. Read key by key: a GET sees
        a write at once, where MinIO's listing may lag behind it (a writer that just lost a race must see the
        winner's line)."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self.body(self.key(index + len(out))))
            except KeyError:
                return out

    def length(self) -> int:
        """How many contiguous lines the sink holds from index 0: a listing, then GETs past where it ends."""
        n = 0
        for key in self._keys(f"entries/{self.stack}/"):
            if key != self.key(n):
                break
            n += 1
        while self.sha256_at(n) is not None:
            n += 1
        return n

    def _versions(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Every version and delete marker under ``prefix``, by key."""
        versions: dict[str, list[dict[str, Any]]] = {}
        pages = self._s3.get_paginator("list_object_versions").paginate(Bucket=self.target.bucket, Prefix=prefix)
        try:
            for page in pages:
                for v in page.get("Versions", []):
                    versions.setdefault(v["Key"], []).append(v)
                for m in page.get("DeleteMarkers", []):
                    versions.setdefault(m["Key"], []).append({**m, "marker": True})
        except (ClientError, BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()}: listing {prefix} failed: {exc}") from None
        return versions

    def view(self, known: Mapping[int, bytes] | None = None, verified: tuple[int, int] = (0, 0)) -> SinkView:
        """Everything check-sink compares: every version of every object, each latest body and its lock.

        ``verified`` = (entries, checkpoints) an earlier check found sound: an object below those that still
        has its one version is not read again when its ETag (the MD5 of its bytes) matches the ``known``
        local line. Its lock and metadata cannot have changed: COMPLIANCE retention is never shortened and any
        write makes a new version, which the listing shows."""
        known = known or {}
        view = SinkView(bucket_lock=self._bucket_lock())
        entries = self._versions(f"entries/{self.stack}/")
        todo: dict[str, list[dict[str, Any]]] = {}
        for key, vs in entries.items():
            name = key.rpartition("/")[2]
            i = int(name) if name.isdigit() and len(name) == 12 else -1
            only = vs[0] if len(vs) == 1 and not vs[0].get("marker") else None
            line = known.get(i)
            if 0 <= i < verified[0] and only and line and only["ETag"].strip('"') == hashlib.md5(line).hexdigest():
                view.entries[i] = SinkEntry(line, str(i), self.stack, trusted=True)
            else:
                todo[key] = vs
        for key, vs in self._versions(f"checkpoints/{self.stack}/").items():
            name = key.rpartition("/")[2]
            if not (name.isdigit() and int(name) < verified[1] and len(vs) == 1 and not vs[0].get("marker")):
                todo[key] = vs
        with ThreadPoolExecutor(_PARALLEL) as pool:
            read = dict(zip(todo, pool.map(self._read_key, todo.items()), strict=True))
        for key, (body, head, vs) in read.items():
            name = key.rpartition("/")[2]
            if key.startswith("checkpoints/"):
                if name.isdigit():
                    view.checkpoints[int(name)] = body
                else:
                    view.strays.append(key)
            elif not (name.isdigit() and len(name) == 12) or not body:
                view.strays.append(key)
            else:
                meta = head.get("Metadata", {})
                view.entries[int(name)] = SinkEntry(
                    body=body[0],
                    meta_index=meta.get("index"),
                    meta_stack=meta.get("stack"),
                    versions=sum(1 for v in vs if not v.get("marker")),
                    delete_markers=sum(1 for v in vs if v.get("marker")),
                    mode=head.get("ObjectLockMode"),
                    retain_until=head.get("ObjectLockRetainUntilDate"),
                    written=head.get("LastModified"),
                )
        return view

    def _read_key(self, item: tuple[str, list[dict[str, Any]]]) -> tuple[list[Any], dict[str, Any], list[Any]]:
        """(bodies: the latest for an entry, every version's for a checkpoint; the latest's head; versions)."""
        key, vs = item
        live = [v for v in vs if not v.get("marker")]
        if key.startswith("checkpoints/"):
            return [self.body(key, v["VersionId"]).decode(errors="replace") for v in live], {}, vs
        latest = max(live, key=lambda v: v["LastModified"], default=None)  # under a delete marker too
        if latest is None:
            return [], {}, vs
        extra = {"VersionId": latest["VersionId"]} if latest.get("VersionId") not in (None, "null") else {}
        got = self._call(f"reading {key}", self._s3.get_object, Key=key, **extra)  # body, metadata and lock
        return [bytes(got["Body"].read())], got, vs

    def _bucket_lock(self) -> tuple[str | None, int | None]:
        try:
            got = self._s3.get_object_lock_configuration(Bucket=self.target.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise SinkError(
                    f"audit sink {self.target.url()}: no bucket {self.target.bucket!r}; create it with "
                    f"fetchml-infra audit init-sink --stack {self.stack}"
                ) from None
            if code in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
                return None, None
            raise SinkError(f"audit sink {self.target.url()}: reading its lock failed: {code}: {exc}") from None
        except (BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()} is unreachable: {exc}") from None
        rule = got.get("ObjectLockConfiguration", {}).get("Rule", {}).get("DefaultRetention", {})
        days = rule.get("Days") or (rule.get("Years", 0) * 365) or None
        return rule.get("Mode"), days

    # -- setting up ------------------------------------------------------------------------------------
    def create_bucket(self) -> str:
        """Create the bucket with Object Lock and a COMPLIANCE default, or check an existing one's lock."""
        try:
            self._call("creating the bucket", self._s3.create_bucket, ObjectLockEnabledForBucket=True)
            made = True
        except SinkError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                raise
            made = False
        if made:
            self._call(
                "setting the default retention",
                self._s3.put_object_lock_configuration,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": self.target.retention_days}},
                },
            )
        mode, days = self._bucket_lock()
        if mode != "COMPLIANCE":
            raise SinkError(
                f"audit sink {self.target.url()}: the bucket exists without COMPLIANCE object lock (saw {mode}); "
                f"Object Lock can only be enabled when a bucket is created: use a new bucket"
            )
        return f"{'created' if made else 'found'} {self.target.url()}: object lock COMPLIANCE, default {days} days"
